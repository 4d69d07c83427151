"""The timing guarantee of issue 39 on a simulated clock: every word's span is sent before the word has finished
playing, counting real-time playback from the first audio byte.

Synthetic speech (tone bursts, one per word, by its expected length at a speaker's rate with +-30 % jitter, short
gaps inside phrases and longer pauses at punctuation) goes through a `TimestampTrack` the way the pipeline feeds it:
text chunks as the planner cuts them, audio in the streaming decoder's pieces (25, 50, 100 then 200 tokens of 20 ms),
`settle` after each piece is sent, `end_segment` at each chunk's end. The engine makes audio at twice real time (the
pace the streaming schedule is built for); the aligner's own time counts as nothing here (bench/bench_timing_latency.py
measures it on the real server). At each send the playback clock reads min(time since the first audio, audio sent).
"""

from __future__ import annotations

import numpy as np
import pytest

from core.align.units import expected_units, pause_weight
from processing.chunking import split_text
from services.pipeline.timestamps import TimestampTrack
from tests.texts import LONG_ENGLISH

RATE = 16_000
PIECES = (25, 50, 100, 200)  # tokens per decoded piece (core.streaming's schedule), 20 ms each
SPEED = 0.5  # seconds of engine time per second of audio: twice real time


def speech(words: list[str], rate: float, rng: np.random.Generator) -> np.ndarray:
    parts = [np.zeros(int(0.1 * RATE), np.float32)]
    for word in words:
        n = int(expected_units(word) / rate * rng.uniform(0.7, 1.3) * RATE)
        t = np.arange(n) / RATE
        parts.append((0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t)).astype(np.float32))
        gap = rng.uniform(0.15, 0.4) if pause_weight(word) else rng.uniform(0.0, 0.04)
        parts.append(np.zeros(int(gap * RATE), np.float32))
    return np.concatenate(parts)


@pytest.mark.parametrize("seed", range(6))
def test_every_span_is_sent_before_its_word_has_finished_playing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rate = rng.uniform(3.7, 5.5)  # units (syllables) per voiced second: +-20 % around the aligner's prior
    chunks = split_text(LONG_ENGLISH, 170)
    track = TimestampTrack()
    track.add_text(LONG_ENGLISH, " ".join(chunks))
    first_piece_s = PIECES[0] * 320 / RATE
    sent = 0  # samples of audio sent
    piece = 0
    received: list[tuple[float, object]] = []  # (playback clock when sent, WordSpan)

    def clock() -> float:
        seconds = sent / RATE
        return min(SPEED * (seconds - first_piece_s), seconds)  # engine time since the first audio byte, capped

    for index, chunk in enumerate(chunks):
        audio = speech(chunk.split(), rate, rng)
        track.start_segment(chunk)
        at = 0
        while at < len(audio):
            size = PIECES[min(piece, len(PIECES) - 1)] * 320
            piece += 1
            track.on_audio(audio[at:at + size])
            sent += min(size, len(audio) - at)
            at += size
            event = track.settle()  # right after the piece was queued
            received += [(clock(), w) for w in (event.words if event else ())]
        last = index == len(chunks) - 1
        event = track.end_segment(sent / RATE if last else None)
        received += [(clock(), w) for w in (event.words if event else ())]
    assert [w.text for _, w in received] == LONG_ENGLISH.split()
    late = [(w.text, w.end, round(when, 3)) for when, w in received if when > w.end]
    assert not late, late
    ends = [w.end for _, w in received]
    assert ends == sorted(ends) and ends[-1] <= sent / RATE
