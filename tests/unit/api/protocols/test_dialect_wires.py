"""The dialect codecs' alignment clocks, with timings shaped like the aligner's (words and characters in seconds
from the start of the context) and audio chunks of known spans."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from api.protocols.cartesia.responses import CartesiaWire
from api.protocols.elevenlabs.responses import ElevenLabsWire


@dataclass
class _Utterance:
    context_id: str = "c"
    last_audio_span: tuple[float, float] = (0.0, 0.0)
    wire_state: dict[str, Any] = field(default_factory=dict)


def _span(text: str, start: float, end: float) -> SimpleNamespace:
    return SimpleNamespace(text=text, start=start, end=end)


def _event(chars: list[tuple[str, float, float]]) -> SimpleNamespace:
    spans = [_span(*c) for c in chars]
    return SimpleNamespace(characters=spans, normalized_characters=spans, words=[])


# "hi yo" then "ok": characters from 0.00 to 0.90 s; audio in chunks of 0.25 s
CHARS_1 = [("h", 0.0, 0.1), ("i", 0.1, 0.2), (" ", 0.2, 0.3), ("y", 0.3, 0.45), ("o", 0.45, 0.6)]
CHARS_2 = [("o", 0.6, 0.75), ("k", 0.75, 0.9)]


def _run(wire: ElevenLabsWire) -> list[dict]:
    u = _Utterance()
    out: list[dict] = []
    wire.timings(u, _event(CHARS_1))  # type: ignore[arg-type]
    wire.timings(u, _event(CHARS_2))  # type: ignore[arg-type]
    for index in range(4):
        u.last_audio_span = (index * 0.25, (index + 1) * 0.25)
        out += wire.audio(u, b"\x00\x00" * 10)  # type: ignore[arg-type]
    out += wire.done(u)  # type: ignore[arg-type]
    return out


def _pipecat_word_starts(messages: list[dict]) -> list[tuple[str, float]]:
    """Pipecat's reading: times relative to a clock advanced by the end of each message's last character; a word
    completes at the next space, the last one at the context's end (Pipecat completes what is left there)."""
    clock, words, word, start = 0.0, [], "", None
    for m in messages:
        a = m.get("alignment")
        if not a:
            continue
        for ch, s in zip(a["chars"], a["charStartTimesMs"], strict=True):
            if ch == " ":
                if word:
                    words.append((word, start))
                word, start = "", None
            else:
                start = clock + s / 1000 if start is None else start
                word += ch
        clock += (a["charStartTimesMs"][-1] + a["charDurationsMs"][-1]) / 1000
    return words + ([(word, start)] if word else [])


def test_elevenlabs_relative_alignment_keeps_pipecats_clock_on_the_audio() -> None:
    messages = _run(ElevenLabsWire(absolute_times=False))
    assert messages[-1] == {"contextId": "c", "context_id": "c", "isFinal": True}
    audio = [m for m in messages if m.get("audio")]
    assert len(audio) == 4 and all(m["contextId"] == m["context_id"] == "c" for m in audio)
    chars = [c for m in messages if m.get("alignment") for c in m["alignment"]["chars"]]
    assert "".join(chars).split() == ["hi", "yo", "ok"]  # every character once, the chunks' words kept apart
    words = _pipecat_word_starts(messages)
    assert [w for w, _ in words] == ["hi", "yo", "ok"]
    assert [round(t, 3) for _, t in words] == [0.0, 0.3, 0.6]  # the aligner's starts, unshifted
    clock = sum(
        (m["alignment"]["charStartTimesMs"][-1] + m["alignment"]["charDurationsMs"][-1]) / 1000
        for m in messages
        if m.get("alignment")
    )
    assert round(clock, 3) == 0.9  # Pipecat's clock ends with the last character (no space is added after it)


def test_elevenlabs_sync_alignment_is_from_the_context_start() -> None:
    messages = _run(ElevenLabsWire(absolute_times=True))
    starts = [s for m in messages if m.get("alignment") for s in m["alignment"]["charStartTimesMs"]]
    assert starts == sorted(starts) and starts[:2] == [0, 100] and max(starts) <= 1000


def test_cartesia_chunks_timestamps_and_f32() -> None:
    wire, u = CartesiaWire(), _Utterance(wire_state={"f32": True, "timestamps": True})
    words = SimpleNamespace(words=[_span("hi", 0.0, 0.2), _span("yo", 0.3, 0.6)])
    [stamps] = wire.timings(u, words)  # type: ignore[arg-type]
    assert stamps["type"] == "timestamps" and stamps["context_id"] == "c"
    assert stamps["word_timestamps"] == {"words": ["hi", "yo"], "start": [0.0, 0.3], "end": [0.2, 0.6]}
    pcm = np.array([0, 16384, -32768], "<i2").tobytes()
    [chunk] = wire.audio(u, pcm)  # type: ignore[arg-type]
    assert chunk["type"] == "chunk" and chunk["done"] is False
    assert np.frombuffer(base64.b64decode(chunk["data"]), "<f4").tolist() == [0.0, 0.5, -1.0]
    assert wire.done(u) == [{"type": "done", "done": True, "status_code": 200, "context_id": "c"}]  # type: ignore[arg-type]
    error = wire.error("INVALID_SPEAKER", "no such voice", "voice", None, "z")
    assert error["type"] == "error" and error["context_id"] == "z" and error["done"] is False


def _pipecat_clocks(messages: list[dict], key: str) -> list[tuple[str, float]]:
    return _pipecat_word_starts([{"alignment": m.get(key)} for m in messages])


def test_elevenlabs_timings_after_their_audio_keep_both_clocks() -> None:
    """Timing never holds audio: words settle after their audio went out. They go at once in a message with empty
    audio, `alignment` and `normalizedAlignment` together, and either field read with Pipecat's running clock gives
    the aligner's starts (the written "$5" and the spoken "five dollars" cover the same time)."""
    wire, u = ElevenLabsWire(absolute_times=False), _Utterance()
    written = [_span(*c) for c in [("I", 0.0, 0.2), (" ", 0.2, 0.3), ("$", 0.3, 0.3), ("5", 0.3, 0.9)]]
    spoken = [
        _span(*c)
        for c in [
            ("I", 0.0, 0.2),
            (" ", 0.2, 0.3),
            ("f", 0.3, 0.4),
            ("i", 0.4, 0.5),
            ("v", 0.5, 0.55),
            ("e", 0.55, 0.6),
            (" ", 0.6, 0.6),
            ("d", 0.6, 0.9),
        ]
    ]
    later = [_span(*c) for c in [("o", 1.1, 1.2), ("k", 1.2, 1.4)]]
    messages: list[dict] = []
    for index in range(3):  # 0.5 s of audio each, sent before any timing
        u.last_audio_span = (index * 0.5, (index + 1) * 0.5)
        messages += wire.audio(u, b"\x00\x00" * 10)  # type: ignore[arg-type]
    assert all(m["alignment"] is None and m["normalizedAlignment"] is None for m in messages)
    first = wire.timings(u, SimpleNamespace(characters=written, normalized_characters=spoken))  # type: ignore[arg-type]
    assert len(first) == 1 and first[0]["audio"] == "" and first[0]["isFinal"] is None
    second = wire.timings(u, _event([(c.text, c.start, c.end) for c in later]))  # type: ignore[arg-type]
    messages += first + second + wire.done(u)  # type: ignore[arg-type]
    for m in messages:
        assert (m.get("alignment") is None) == (m.get("normalizedAlignment") is None), m
    assert [(w, round(t, 3)) for w, t in _pipecat_clocks(messages, "alignment")] == [
        ("I", 0.0),
        ("$5", 0.3),
        ("ok", 1.1),
    ]
    assert [(w, round(t, 3)) for w, t in _pipecat_clocks(messages, "normalizedAlignment")] == [
        ("I", 0.0),
        ("five", 0.3),
        ("d", 0.6),
        ("ok", 1.1),
    ]


def test_elevenlabs_timings_ahead_of_their_audio_ride_on_it() -> None:
    wire, u = ElevenLabsWire(absolute_times=True), _Utterance()
    assert wire.timings(u, _event(CHARS_1)) == []  # type: ignore[arg-type]  # nothing sent yet: wait for audio
    u.last_audio_span = (0.0, 0.25)
    [message] = wire.audio(u, b"\x00\x00")  # type: ignore[arg-type]
    assert message["alignment"]["chars"] == ["h", "i", " ", "y", "o"]  # nothing the text did not have
    assert message["normalizedAlignment"]["chars"] == message["alignment"]["chars"]


def _livekit_transcript(sentences: list[str], events: list[list[str]], sent_before: list[int]) -> str:
    """How LiveKit's Cartesia client assembles its timed transcript (facts: specs/voice_agents.md and its source):
    each sentence it sent, with a trailing space, is queued; each word received is looked up in the oldest queued
    sentence and takes the text up to its end; whitespace left over joins the next queued sentence, or is lost when
    none is queued yet. `sent_before[i]`: how many sentences were sent when event i arrived."""
    queued: list[str] = []
    out = ""
    sent = 0
    for words, upto in zip(events, sent_before, strict=True):
        while sent < upto:
            queued.append(sentences[sent] + " ")
            sent += 1
        for word in words:
            head = queued.pop(0)
            idx = head.find(word)
            assert idx != -1, (word, head)
            piece, rest = head[: idx + len(word)], head[idx + len(word) :]
            if rest.strip():
                queued.insert(0, rest)
            elif rest and queued:
                queued[0] = rest + queued[0]
            out += piece
    return out


def test_cartesia_sentence_ends_keep_their_space_for_livekits_transcript() -> None:
    """A two-sentence reply whose first sentence's words arrive before LiveKit sent the second: "now. This", not
    "now.This"."""
    wire, u = CartesiaWire(), _Utterance(wire_state={"timestamps": True})
    first = SimpleNamespace(words=[_span("Right", 0.0, 0.3), _span("now.", 0.3, 0.6)])
    second = SimpleNamespace(words=[_span("This", 0.8, 1.0), _span("works.", 1.0, 1.4)])
    events = [m["word_timestamps"]["words"] for e in (first, second) for m in wire.timings(u, e)]  # type: ignore[arg-type]
    assert events == [["Right", "now. "], ["This", "works. "]]
    transcript = _livekit_transcript(["Right now.", "This works."], events, [1, 2])
    assert transcript.split(" ") == ["Right", "now.", "This", "works.", ""]
