"""Streaming time-stretch (tempo change without a pitch change) of 16 kHz speech, for `speed` on voices whose
prompt has no trained speed control, and for the rest of the way on those that have one.

WSOLA from `audiotsm` (numpy only; the one of the libraries weighed that streams: pyrubberband, pytsmod and librosa
stretch a whole signal at once, see README "Speed"). audiotsm's defaults (synthesis hop = half a frame) are only
right up to 2x: above that its analysis hop outgrows the frame and it skips input (4x came out 6.1x, measured), so
the synthesis hop is kept at most frame / speed, which holds the analysis hop within one frame. Output is the same
whatever the input's chunking (tested), so a stream equals the complete file.
"""

from __future__ import annotations

import numpy as np
from audiotsm import wsola
from audiotsm.io.array import ArrayReader
from audiotsm.io.base import Writer

FRAME_SAMPLES = 512  # 32 ms at 16 kHz: about two pitch periods of a low voice, as WSOLA wants for speech
MIN_SPEED, MAX_SPEED = 0.25, 4.0


class _Sink(Writer):
    """Collects what the stretcher writes until the caller takes it (one push's worth at a time)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []

    @property
    def channels(self) -> int:
        return 1

    def write(self, buffer: np.ndarray) -> int:
        self._parts.append(np.array(buffer[0], np.float32))
        return buffer.shape[1]

    def take(self) -> np.ndarray:
        data = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        self._parts = []
        return data


class StreamingTimeStretch:
    """float32 chunks in, the same speech `speed` times faster out (0.25..4.0; 2.0 = half the duration)."""

    def __init__(self, speed: float) -> None:
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise ValueError(f"speed must be within {MIN_SPEED}..{MAX_SPEED}, got {speed}")
        self.speed = speed
        hop = min(FRAME_SAMPLES // 2, int(FRAME_SAMPLES / speed))
        self._tsm = wsola(1, speed=speed, frame_length=FRAME_SAMPLES, synthesis_hop=hop)
        self._sink = _Sink()

    def push(self, samples: np.ndarray) -> np.ndarray:
        if samples.size:
            reader = ArrayReader(np.asarray(samples, np.float32).reshape(1, -1))
            finished = False
            while not (finished and reader.empty):
                self._tsm.read_from(reader)
                _, finished = self._tsm.write_to(self._sink)
        return self._sink.take()

    def finish(self) -> np.ndarray:
        finished = False
        while not finished:
            _, finished = self._tsm.flush_to(self._sink)
        return self._sink.take()
