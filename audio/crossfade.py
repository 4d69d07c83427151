"""Equal-power crossfades between consecutive audio segments (text chunks), one-shot and streaming.

Joining is defined as a left fold: `out = join(join(s1, s2), s3) ...` where each join overlaps the last
n samples of what came before with the first n samples of the next segment, n = min(overlap, len(before),
len(next)). With segments no shorter than `overlap` the output is sum(lengths) - overlap * (segments - 1);
shorter segments shrink their own join and empty segments are skipped. `ChunkJoiner` produces exactly
the fold's output, incrementally.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from audio.pcm import as_mono_float32

DEFAULT_CROSSFADE_MS = 50.0
_EMPTY = np.zeros(0, dtype=np.float32)


def crossfade_samples(sample_rate: int, ms: float = DEFAULT_CROSSFADE_MS) -> int:
    """Number of samples in a crossfade of `ms` milliseconds."""
    return max(0, round(sample_rate * ms / 1000.0))


@lru_cache(maxsize=32)
def _ramps(n: int) -> tuple[np.ndarray, np.ndarray]:
    # Sampled at bin centres so neither ramp starts exactly at 0 or 1; cos^2 + sin^2 = 1 at every sample,
    # which keeps the power of uncorrelated signals constant through the join.
    theta = (np.arange(n, dtype=np.float64) + 0.5) * (np.pi / 2.0 / n)
    fade_out = np.cos(theta).astype(np.float32)
    fade_in = np.sin(theta).astype(np.float32)
    fade_out.flags.writeable = False
    fade_in.flags.writeable = False
    return fade_out, fade_in


def equal_power_ramps(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) of length n: cos and sin quarter waves."""
    if n < 0:
        raise ValueError("ramp length must be >= 0")
    if n == 0:
        return _EMPTY, _EMPTY
    return _ramps(n)


def _mix(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    fade_out, fade_in = equal_power_ramps(len(tail))
    mixed: np.ndarray = tail * fade_out + head * fade_in
    return mixed


def crossfade_join(a: np.ndarray, b: np.ndarray, overlap: int) -> np.ndarray:
    """Join two segments with an equal-power crossfade of min(overlap, len(a), len(b)) samples."""
    a = as_mono_float32(a)
    b = as_mono_float32(b)
    n = max(0, min(overlap, len(a), len(b)))
    if n == 0:
        return np.concatenate((a, b))
    return np.concatenate((a[: len(a) - n], _mix(a[len(a) - n :], b[:n]), b[n:]))


def crossfade_concat(segments: list[np.ndarray], overlap: int) -> np.ndarray:
    """Fold `crossfade_join` over many segments (the reference for `ChunkJoiner`)."""
    out = _EMPTY
    for seg in segments:
        out = crossfade_join(out, seg, overlap)
    return out


class ChunkJoiner:
    """Streaming crossfade: segments arrive in pieces; output leaves as soon as it can no longer change.

    Only the last `overlap` samples of the output so far are held back (they may be faded into the next
    segment), plus, right after `start_segment()`, up to `overlap` samples of the new segment's head until
    its crossfade length is known. After `last_segment()` nothing is held back: no segment will follow.
    """

    def __init__(self, overlap: int) -> None:
        if overlap < 0:
            raise ValueError("overlap must be >= 0")
        self.overlap = overlap
        self._held = _EMPTY  # last <= overlap samples of the output, not yet emitted
        self._head: list[np.ndarray] = []  # start of the current segment, waiting to be mixed
        self._head_len = 0
        self._mixing = False  # collecting the head of a segment that will be crossfaded in
        self._last = False  # no segment follows the current one
        self._finished = False

    @property
    def holds_output(self) -> bool:
        """Whether output is held back: a tail for a crossfade, or a new segment's head until its join is known."""
        return self._mixing or len(self._held) > 0

    def start_segment(self) -> None:
        """Mark that further pushes belong to a new segment (to be crossfaded in). Optional before the first."""
        self._check_open()
        # Resolving a short previous segment never makes output final: all of it stays within `held`.
        self._resolve_short_head()
        # The join length can be at most what the output holds so far (len(held) = min(overlap, produced)).
        self._mixing = len(self._held) > 0

    def last_segment(self) -> None:
        """No segment follows the current one: from the next push on, output leaves at once (a single-segment
        stream would otherwise keep its last `overlap` samples back until the end, every chunk)."""
        self._check_open()
        self._last = True

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples of the current segment; returns the output samples that are now final."""
        self._check_open()
        x = as_mono_float32(samples)
        if len(x) == 0:
            return _EMPTY
        if self._mixing:
            self._head.append(x)
            self._head_len += len(x)
            n = len(self._held)
            if self._head_len < n:
                return _EMPTY
            head = np.concatenate(self._head)
            self._head, self._head_len, self._mixing = [], 0, False
            x = np.concatenate((_mix(self._held, head[:n]), head[n:]))
            self._held = _EMPTY
        return self._advance(x)

    def finish(self) -> np.ndarray:
        """End of the last segment: returns everything still held."""
        self._check_open()
        self._resolve_short_head()
        out, self._held = self._held, _EMPTY
        self._finished = True
        return out

    def _advance(self, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate((self._held, x)) if len(self._held) else x
        keep = 0 if self._last else min(self.overlap, len(buf))
        self._held = buf[len(buf) - keep :].copy()
        return buf[: len(buf) - keep]

    def _resolve_short_head(self) -> None:
        """A segment ended before `len(held)` samples arrived: crossfade over its whole length."""
        if not self._mixing:
            return
        self._mixing = False
        if self._head_len == 0:
            return
        head = np.concatenate(self._head)
        self._head, self._head_len = [], 0
        cut = len(self._held) - len(head)
        self._held = np.concatenate((self._held[:cut], _mix(self._held[cut:], head)))

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("ChunkJoiner already finished")
