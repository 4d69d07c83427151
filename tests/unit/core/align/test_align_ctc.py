"""core.align.ctc: the Viterbi on emissions whose best path is known, and a tiny random Wav2Vec2ForCTC through the
whole path (load, batched emissions, spans, scores, the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from core.align import align
from core.align.ctc import CtcAligner, CtcModelError, align_emissions, forced_path, model_dir_for
from tests.ctc_model import build_tiny_ctc_model

ROOT = Path(__file__).resolve().parents[4]


def _emissions(path: list[int], vocab: int = 10) -> np.ndarray:
    """Log-probabilities that put 0.9 on the given label at each frame."""
    probs = np.full((len(path), vocab), 0.1 / (vocab - 1))
    probs[np.arange(len(path)), path] = 0.9
    return np.log(probs)


def test_forced_path_follows_the_known_best_path() -> None:
    # frames: blank, a, a, blank, b, b, b, blank, a(repeat needs the blank), blank
    frames = [0, 2, 2, 0, 3, 3, 3, 0, 2, 0]
    emits, total = forced_path(_emissions(frames), [2, 3, 2], blank=0)
    assert emits.tolist() == [-1, 0, 0, -1, 1, 1, 1, -1, 2, -1]
    assert total == pytest.approx(10 * np.log(0.9))


def test_repeated_letters_need_a_blank_between() -> None:
    frames = [2, 0, 2]
    emits, _ = forced_path(_emissions(frames), [2, 2], blank=0)
    assert emits.tolist() == [0, -1, 1]
    with pytest.raises(ValueError, match="too short"):
        forced_path(_emissions([2, 2]), [2, 2], blank=0)


def test_spans_from_emissions_are_exact() -> None:
    # "ab" on frames 1-3, "ce" on frames 6-8, of 10 frames spanning 0.2 s (20 ms each).
    frames = [0, 2, 3, 3, 0, 0, 4, 6, 6, 0]
    vocab = {"a": 2, "b": 3, "c": 4, "e": 6}
    result = align_emissions(
        _emissions(frames), ["ab", "ce,"], lambda w: [vocab[c] for c in w if c in vocab], 0, 0.2
    )
    assert [(w.text, w.start, w.end) for w in result.words] == [("ab", 0.02, 0.08), ("ce,", 0.12, 0.18)]
    assert all(w.score == pytest.approx(np.log(0.9), abs=1e-4) for w in result.words)


def test_a_word_the_model_cannot_spell_gets_a_zero_span_in_place() -> None:
    frames = [0, 2, 0, 3, 0]
    result = align_emissions(
        _emissions(frames), ["a", "你", "b"], lambda w: [{"a": 2, "b": 3}[c] for c in w if c in "ab"], 0, 0.1
    )
    assert [w.text for w in result.words] == ["a", "你", "b"]
    assert (
        result.words[1].start == result.words[1].end == result.words[0].end and result.words[1].score is None
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_ctc_model(tmp_path_factory.mktemp("ctc"))


def _audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16_000))).astype(np.float32)


def test_tiny_model_aligns_a_batch_like_one_by_one(tiny_model: Path) -> None:
    aligner = CtcAligner.load(tiny_model)
    items = [(_audio(1.0, 1), ["hello", "bad", "code"]), (_audio(0.6, 2), ["abc,", "de"])]
    batch = aligner.align_batch(items)
    for (audio, words), result in zip(items, batch, strict=True):
        assert [w.text for w in result.words] == words
        times = [t for w in result.words for t in (w.start, w.end)]
        assert times == sorted(times) and times[-1] <= len(audio) / 16_000
        assert all(w.score is not None and w.score <= 0 for w in result.words)
        solo = align(audio, words, method="ctc", ctc=aligner)
        assert [(w.start, w.end) for w in solo.words] == [(w.start, w.end) for w in result.words]


def test_text_longer_than_the_frames_falls_back_to_estimate(tiny_model: Path) -> None:
    aligner = CtcAligner.load(tiny_model)
    words = ["abcabcabcabc"] * 8  # ~100 characters in 0.2 s: 9 frames
    result = aligner.align_batch([(_audio(0.2, 6), words)])[0]
    assert result.method == "estimate" and [w.text for w in result.words] == words


def test_loading_refuses_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(CtcModelError, match="not a Wav2Vec2ForCTC"):
        CtcAligner.load(tmp_path)
    assert model_dir_for("en=/a,zh=/b", "zh") == Path("/b") and model_dir_for("/m", "hi") == Path("/m")
    with pytest.raises(CtcModelError, match="no ctc model for language 'hi'"):
        model_dir_for("en=/a", "hi")


def test_cli_ctc_method(tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes((_audio(1.0, 3) * 32767).astype("<i2").tobytes())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.align",
            str(path),
            "hello code",
            "--method",
            "ctc",
            "--model",
            str(tiny_model),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    words = json.loads(done.stdout)["words"]
    assert [w["text"] for w in words] == ["hello", "code"] and all("score" in w for w in words)
    done = subprocess.run(
        [sys.executable, "-m", "core.align", str(path), "hello", "--method", "ctc", "--model", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "not a Wav2Vec2ForCTC" in done.stderr


def test_concurrent_callers_get_the_solo_result(tiny_model: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    aligner = CtcAligner.load(tiny_model)
    items = [(_audio(0.5 + 0.1 * i, i), ["hello", "code"][: 1 + i % 2]) for i in range(6)]
    solo = [aligner.align_batch([item])[0] for item in items]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda item: aligner.align_batch([item])[0], items))
    assert together == solo
    estimate_solo = [align(audio, words) for audio, words in items]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda item: align(*item), items)) == estimate_solo


def test_the_service_track_uses_the_model_of_the_chunks_language(tiny_model: Path) -> None:
    from core.align.ctc import load_aligners
    from services.pipeline.timestamps import TimestampTrack

    models = load_aligners(f"en={tiny_model}")
    assert set(models) == {"en"} and set(load_aligners(str(tiny_model))) == {"*"}
    track = TimestampTrack(ctc=models)
    track.add_text("hello code 你好", "hello code 你好")
    english = track.align_chunk(_audio(1.0, 4), "hello code")
    chinese = track.align_chunk(_audio(1.0, 5), "你好")
    assert [w.text for w in english.words] == ["hello", "code"] and all(
        w.score is not None for w in english.words
    )
    assert [w.text for w in chinese.words] == ["你", "好"] and all(w.score is None for w in chinese.words)
    assert chinese.words[0].start >= english.words[-1].end
