"""Re-buffer audio that arrives in irregular pieces into fixed-size frames (steady 20-100 ms chunks)."""

from __future__ import annotations

import numpy as np

from audio.pcm import as_mono_float32

_EMPTY = np.zeros(0, dtype=np.float32)


def frame_samples_for(sample_rate: int, frame_ms: float) -> int:
    """Samples per frame of `frame_ms` milliseconds (at least one)."""
    return max(1, round(sample_rate * frame_ms / 1000.0))


class FrameBuffer:
    """Collects pushed samples and hands them out as frames of exactly `frame_samples` samples."""

    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.frame_samples = frame_samples
        self._parts: list[np.ndarray] = []
        self._pending = 0

    @property
    def pending(self) -> int:
        """Samples held that do not yet fill a frame."""
        return self._pending

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add samples; returns the complete frames now available (possibly none)."""
        block = self._whole_frames(samples, private=True)
        n = self.frame_samples
        return [block[i : i + n] for i in range(0, len(block), n)]

    def push_joined(self, samples: np.ndarray) -> np.ndarray:
        """`push`'s frames joined in one array (empty when none is complete), a view of `samples` where it can be:
        for encoders whose bytes depend on each sample alone, one call per chunk and no split to join again."""
        return self._whole_frames(samples, private=False)

    def _whole_frames(self, samples: np.ndarray, *, private: bool) -> np.ndarray:
        """The complete frames with what is held, in one array; what is left over is held (as a copy: the caller may
        reuse its array). `private`: never a view of `samples`."""
        x = as_mono_float32(samples)
        if len(x) == 0:
            return _EMPTY
        self._pending += len(x)
        if self._pending < self.frame_samples:
            self._parts.append(x.copy())
            return _EMPTY
        buf = np.concatenate((*self._parts, x)) if self._parts or private else x
        n_full = len(buf) // self.frame_samples * self.frame_samples
        rest = buf[n_full:]
        self._parts = [rest if buf is not x else rest.copy()] if len(rest) else []
        self._pending = len(rest)
        return buf[:n_full]

    def flush(self) -> np.ndarray:
        """The remainder as one final short frame (empty when nothing is left)."""
        out = np.concatenate(self._parts) if self._parts else _EMPTY
        self._parts, self._pending = [], 0
        return out
