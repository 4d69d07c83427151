"""Timestamps on a simulated playback clock, shared by `bench_timing_latency.py --simulate` (accuracy figures) and
tests/unit/services/pipeline/test_timing_playback.py (the guarantee): synthetic speech, and a `TimestampTrack` fed the way the
pipeline feeds it.

Speech: one tone burst per word, its expected length at the speaker's `rate` (syllables per voiced second) with
+-30 % jitter, short gaps inside phrases and longer pauses at punctuation, after 0.1 s of silence. Feeding: audio in
the streaming decoder's pieces (25, 50, 100 then 200 tokens of 20 ms), `settle` after each piece is sent,
`end_segment` at each text chunk's end. The engine makes audio at `speed` seconds per audio second (0.5: twice real
time, the pace the streaming schedule is built for); at each send the playback clock reads min(engine time since
the first audio, audio sent). The aligner's own time counts as nothing.
"""

from __future__ import annotations

import numpy as np

from core.align.types import WordSpan
from core.align.units import expected_units, pause_weight
from services.pipeline.timestamps import TimestampTrack

RATE = 16_000
PIECES = (25, 50, 100, 200)  # tokens per decoded piece (core.streaming's schedule), 20 ms each
SPEED = 0.5  # seconds of engine time per second of audio: twice real time
HOP = 320  # samples per token


def speech(words: list[str], rate: float, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """The audio and each word's true start (seconds from the audio's start)."""
    parts, starts, t = [np.zeros(int(0.1 * RATE), np.float32)], [], 0.1
    for word in words:
        n = int(expected_units(word) / rate * rng.uniform(0.7, 1.3) * RATE)
        parts.append(
            (0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * np.arange(n) / RATE)).astype(np.float32)
        )
        starts.append(t)
        gap = int((rng.uniform(0.15, 0.4) if pause_weight(word) else rng.uniform(0.0, 0.04)) * RATE)
        parts.append(np.zeros(gap, np.float32))
        t += n / RATE + gap / RATE
    return np.concatenate(parts), starts


class PlaybackFeed:
    """One stream's audio into `track`, piece by piece; `sent` counts the samples sent over all chunks."""

    def __init__(self, track: TimestampTrack, pieces: tuple[int, ...] = PIECES, speed: float = SPEED) -> None:
        self.track, self.pieces, self.speed = track, pieces, speed
        self.sent = 0
        self._piece = 0

    def clock(self) -> float:
        seconds = self.sent / RATE
        return min(self.speed * (seconds - self.pieces[0] * HOP / RATE), seconds)

    def chunk(self, text: str, audio: np.ndarray, last: bool) -> list[tuple[float, WordSpan]]:
        """One text chunk's audio: the spans it settles, each with the playback clock when it was sent."""
        got: list[tuple[float, WordSpan]] = []
        self.track.start_segment(text)
        at = 0
        while at < len(audio):
            size = self.pieces[min(self._piece, len(self.pieces) - 1)] * HOP
            self._piece += 1
            self.track.on_audio(audio[at : at + size])
            self.sent += min(size, len(audio) - at)
            at += size
            event = self.track.settle()  # right after the piece was queued
            got += [(self.clock(), w) for w in (event.words if event else ())]
        event = self.track.end_segment(self.sent / RATE if last else None)
        got += [(self.clock(), w) for w in (event.words if event else ())]
        return got
