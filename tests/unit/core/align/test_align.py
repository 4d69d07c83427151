"""core.align: timing units, the estimate method (whole and streamed) on signals whose pauses are known, character
spans, the CLI."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from core.align import Alignment, WordSpan, align, character_spans, expected_units, split_words
from core.align.estimate import find_pauses, voiced_frames
from core.align.incremental import IncrementalEstimate
from core.align.units import inside_words

ROOT = Path(__file__).resolve().parents[4]
RATE = 16_000


def _tone(seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def test_split_words_keeps_tokens_and_splits_han_characters() -> None:
    assert split_words("  Hello,  world! $5 ") == ["Hello,", "world!", "$5"]
    assert split_words("你好，世界。") == ["你", "好，", "世", "界。"]
    assert split_words("मेरे पास 25 रुपये हैं।") == ["मेरे", "पास", "25", "रुपये", "हैं।"]
    assert split_words("") == []


def test_inside_words_marks_boundaries_inside_chinese_words_only() -> None:
    words = split_words("我们去公园散步，然后 hello 今天")
    inside = dict(zip(range(len(words)), inside_words(words), strict=True))
    assert [words[j] for j, flag in inside.items() if flag] == ["们", "园", "步，", "后", "天"]
    # Punctuation ends a run (步， | 然), and so does a word in another script (后 | hello | 今).
    assert inside_words([]) == [] and inside_words(["hello", "world"]) == [False, False]
    assert inside_words(["好"]) == [False]


def test_expected_units_by_script() -> None:
    assert expected_units("cat") == 1 and expected_units("beautiful") == 3
    assert expected_units("你") == 1 and expected_units("好，") == 1
    assert expected_units("नमस्ते") == 3  # न म स्ते: the conjunct is one akshara
    assert expected_units("क्या") == 1


def test_estimate_snaps_group_boundaries_to_pauses() -> None:
    # Three phrases (2, 3 and 1 words) with 300 ms and 500 ms pauses between them, silence around.
    audio = np.concatenate(
        [_silence(0.2), _tone(0.6), _silence(0.3), _tone(0.9), _silence(0.5), _tone(0.4), _silence(0.2)]
    )
    words = ["Hello", "there,", "how", "are", "you?", "Fine."]
    result = align(audio, words)
    assert [w.text for w in result.words] == words
    starts = [w.start for w in result.words]
    ends = [w.end for w in result.words]
    assert starts == sorted(starts) and all(a <= b for a, b in zip(starts, ends, strict=True))
    assert all(b.start >= a.end for a, b in zip(result.words, result.words[1:], strict=False))
    for got, want in (
        (starts[0], 0.2),
        (ends[1], 0.8),
        (starts[2], 1.1),
        (ends[4], 2.0),
        (starts[5], 2.5),
        (ends[5], 2.9),
    ):
        assert abs(got - want) <= 0.02, (got, want)


@pytest.mark.parametrize("faster", [1.0, 1.35, 1.5])
def test_streamed_comma_wins_at_its_pause_when_the_phrase_outruns_the_rate(faster: float) -> None:
    """A stream that knows the speaker's rate (3 units/s) hears a phrase ending in a comma spoken faster, then a pause
    and more speech: the comma's pause ends the group (the rate alone would end it two words early, and leave the
    comma inside the speech heard after the pause)."""
    text = "一二三四五六七八，九十百千万亿甲乙。"
    first_s = 8 / (3.0 * faster)
    audio = np.concatenate((_silence(0.2), _tone(first_s), _silence(0.4), _tone(8 / 3.0), _silence(0.3)))
    inc = IncrementalEstimate(split_words(text), rate=3.0)
    spans, at = [], 0
    for piece_s in (0.5, 1.0, 2.0, 4.0, 4.0):  # the decoder's pieces
        spans += inc.feed(audio[at : at + int(piece_s * RATE)])
        at += int(piece_s * RATE)
    spans += inc.finish()
    assert [w.text for w in spans] == split_words(text)
    assert abs(spans[7].end - (0.2 + first_s)) < 0.06 and abs(spans[8].start - (0.6 + first_s)) < 0.06


def test_estimate_without_pauses_shares_time_by_expected_units() -> None:
    audio = _tone(1.2)
    result = align(audio, ["day", "wonderful", "a"])  # 1, 3 and 0.5 units (English: three letters a unit)
    durations = [w.end - w.start for w in result.words]
    assert durations[1] == pytest.approx(3 * durations[0], abs=0.03)
    assert durations[1] == pytest.approx(6 * durations[2], abs=0.03)
    assert result.words[0].start == 0.0 and result.words[-1].end == pytest.approx(1.2, abs=0.001)


def test_estimate_on_silence_and_empty_input() -> None:
    result = align(_silence(1.0), ["one", "two"])
    assert [w.text for w in result.words] == ["one", "two"] and result.words[-1].end <= 1.0
    assert align(_tone(0.5), []).words == ()
    assert align(np.zeros(0, np.float32), ["x"]).words[0].end == 0.0


def test_pause_detection_on_the_20ms_grid() -> None:
    audio = np.concatenate([_tone(0.4), _silence(0.1), _tone(0.4), _silence(0.04), _tone(0.4)])
    pauses = find_pauses(voiced_frames(audio))
    assert pauses == [(20, 25)]  # 100 ms found; 40 ms is too short to be a pause


def test_character_spans_cover_words_and_spaces() -> None:
    words = (WordSpan("Hi,", 0.0, 0.4), WordSpan("you", 0.6, 0.9))
    chars = character_spans(words)
    assert "".join(c.text for c in chars) == "Hi, you"
    assert chars[0].start == 0.0 and chars[1].end == 0.4 and chars[2].start == chars[2].end == 0.4
    assert (chars[3].start, chars[3].end) == (0.4, 0.6)  # the space spans the gap
    assert chars[-1].end == 0.9


def test_alignment_json_and_shift() -> None:
    result = Alignment((WordSpan("a", 0.1, 0.2),), "estimate", 1.0).shifted(1.5)
    assert result.to_json()["words"] == [{"text": "a", "start": 1.6, "end": 1.7}]
    assert [c["text"] for c in result.to_json()["characters"]] == ["a"]


def test_unknown_method_and_missing_model_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown alignment method"):
        align(_tone(0.2), ["x"], method="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a model"):
        align(_tone(0.2), ["x"], method="ctc")


def _write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.align", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_prints_json_and_refuses_bad_input(tmp_path: Path) -> None:
    import json

    path = tmp_path / "speech.wav"
    _write_wav(path, np.concatenate([_tone(0.5), _silence(0.3), _tone(0.5)]))
    done = _cli(str(path), "你好 world")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [w["text"] for w in out["words"]] == ["你", "好", "world"]
    assert [c["text"] for c in out["characters"]] == list("你好 world")  # no space between Han characters
    assert all(0 <= w["start"] <= w["end"] <= 1.3 for w in out["words"])

    for args, reason in (
        ((str(tmp_path / "missing.wav"), "hi"), "no such audio file"),
        ((str(path), "   "), "no words"),
        ((str(path), "hi", "--method", "viterbi"), "invalid choice"),
    ):
        done = _cli(*args)
        assert done.returncode == 2 and reason in done.stderr, done.stderr
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all")
    done = _cli(str(garbage), "hi")
    assert done.returncode == 2 and "error" in done.stderr
