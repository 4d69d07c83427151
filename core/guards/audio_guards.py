"""Silence over decoded audio, fed chunk by chunk as the decoder delivers it (pure numpy, no I/O)."""

from __future__ import annotations

import numpy as np

FRAME_S = 0.02


class SilenceDetector:
    """Frames (20 ms) whose RMS is below `level_db` dBFS, for longer than `max_s` in a row.

    `feed` returns the sample index (within everything fed so far) where the silent run passed `max_s`, or None.
    Frames are cut from the running stream (a partial frame waits for the next chunk), so chunk sizes do not change
    the answer."""

    def __init__(self, sample_rate: int, *, level_db: float, max_s: float) -> None:
        self.frame = max(1, round(sample_rate * FRAME_S))
        self.max_frames = max(1, int(np.ceil(max_s / FRAME_S)))
        self.threshold = float((10.0 ** (level_db / 20.0)) ** 2)  # on the mean square: no sqrt per frame
        self._carry = np.zeros(0, np.float32)
        self._offset = 0  # samples consumed into whole frames
        self.run = 0  # silent frames in a row
        self.longest = 0

    def feed(self, audio: np.ndarray) -> int | None:
        data = (
            np.concatenate([self._carry, np.asarray(audio, np.float32).ravel()])
            if self._carry.size
            else np.asarray(audio, np.float32).ravel()
        )
        whole = data.size // self.frame
        self._carry = data[whole * self.frame :].copy()
        if not whole:
            return None
        frames = data[: whole * self.frame].reshape(whole, self.frame)
        silent = np.einsum("ij,ij->i", frames, frames) < self.threshold * self.frame
        start = self._offset
        self._offset += whole * self.frame
        tripped = None
        run = self.run
        # Runs of silent frames: the run length at each frame, carried across calls.
        if silent.all():
            lengths = run + np.arange(1, whole + 1)
        else:
            idx = np.arange(whole)
            last_loud = np.maximum.accumulate(np.where(~silent, idx, -1))
            lengths = np.where(last_loud >= 0, idx - last_loud, run + idx + 1)
            lengths[~silent] = 0
        self.run = int(lengths[-1])
        self.longest = max(self.longest, int(lengths.max()))
        over = np.flatnonzero(lengths > self.max_frames)
        if over.size:
            tripped = start + int(over[0]) * self.frame
        return tripped
