"""Streaming super-resolution as windows, without the model: 16 kHz samples in, AP-BWE windows out.

The same schedule as `core.apbwe.SRStream` (whose concatenated output equals `SuperResolution.upsample`): a window
is planned once at least `min_block` new samples have their full right context buffered, covering everything ready,
at most `max_block` per window; each window carries `context` samples each side (fewer at the signal's start) and
starts on the STFT frame grid. The caller runs each window's model call (the codec scheduler, batched with other
streams' windows, or `SuperResolution.enhance_window` directly) and concatenates the kept outputs in order.

The window at the stream's true end is marked (`true_end`): its right edge is the signal's end (reflect padding in the
STFT), so it must run at its exact length, never right-padded into a bucket. Every other window has its full right
context and may be zero-padded (the kept output is unchanged: docs/reference/gpu-serving.md#right-padding-is-exact).
With `end_lengths` (the codec scheduler's AP-BWE buckets where it replays graphs), the true end's window reaches
further left, to the shortest of those lengths that holds it, when the signal's end lies on the grid: more left
context leaves the kept output as it is (every convolution is length-independent: core/exact_conv), and a window of
exactly a bucket's length needs no padding, so it rides that bucket's graph with other streams' rows instead of an
eager call of its own. A signal whose end lies off the grid (`speed`'s time-stretch, a cut) is first extended with
zeros to the grid (fewer than `grid` samples: under 5 ms for the released model) where that lets its end take a
bucket: a few milliseconds of silence at the very end instead of an eager fp32 call that every other stream's windows
wait behind on the device.

The lead window: a stream's first window may take its right context from a guess of what follows (`push(...,
ahead=)`: the decode schedule's held overlap, decoded again and crossfaded by the next window). Without it the first
48 kHz audio waits for `min_block` + `context` samples (7.75 tokens), which balanced's first chunk (4 tokens) does not
give, so it waited for the second decode window: token 28 instead of 16, and a decode call more than at 16 kHz
(bench/first_audio_48k.py). The lead window's kept output differs from the offline upsample where the guess differs
from the audio that came (the short schedule's first second already may: docs/benchmarks.md); with a right guess it
is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATIO = 3  # 16 kHz -> 48 kHz


@dataclass(frozen=True, eq=False)
class SRWindow:
    """One AP-BWE window (a row of the codec scheduler's SR calls): 16 kHz samples with their context, and which
    48 kHz output samples to keep.

    `true_end`: the window ends at the stream's true end (reflect padding at the right edge): it takes its
    exact-length path and is never right-padded into a bucket. Every other window may be zero-padded on the right
    (the kept output is bit-identical: docs/reference/gpu-serving.md#right-padding-is-exact)."""

    samples: np.ndarray  # float32 [S] at 16 kHz, context included
    keep_start: int  # 48 kHz output samples, within the window's output (3 * S samples)
    keep_end: int
    true_end: bool = False

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"an SR window needs 1-D samples, got shape {self.samples.shape}")
        if not 0 <= self.keep_start <= self.keep_end:
            raise ValueError(f"bad keep range [{self.keep_start}, {self.keep_end})")

    @property
    def length(self) -> int:
        return int(self.samples.size)


class SRPlanner:
    """One stream's windows. `grid` and `context` come from the model's config (`SuperResolution.grid`/`.context`:
    80 and 880 samples for the released AP-BWE). Not thread-safe."""

    def __init__(
        self, *, grid: int, context: int, min_block: int, max_block: int, end_lengths: tuple[int, ...] = ()
    ) -> None:
        if grid < 1 or context < 0 or context % grid:
            raise ValueError(f"context ({context}) must be a non-negative multiple of grid ({grid})")
        if any(n < 1 or n % grid for n in end_lengths):
            raise ValueError(f"end lengths ({end_lengths}) must be positive multiples of grid ({grid})")
        self.grid = grid
        self.context = context
        self.min_block = max(grid, _round_up(min_block, grid))
        self.max_block = max(self.min_block, _round_up(max_block, grid))
        self.end_lengths = tuple(sorted(set(end_lengths)))
        # input samples kept before the next window's start: its left context, or what the longest end length reads
        self._history = max(self.context, *self.end_lengths) if self.end_lengths else self.context
        self._pending: list[np.ndarray] = []  # chunks not yet joined into _buf
        self._buf = np.zeros(0, np.float32)  # input samples from absolute index _buf_start
        self._buf_start = 0
        self._done = 0  # absolute input index up to which windows have been planned
        self._finished = False
        self.samples_in = 0
        self.windows = 0
        self.lead_windows = 0  # first windows whose right context was a guess (`push(..., ahead=)`)
        self.samples_planned = 0  # 16 kHz samples in windows, context included
        self.end_padding = 0  # zeros appended at finish() to bring an off-grid end onto the grid (see above)

    @property
    def finished(self) -> bool:
        return self._finished

    def push(self, chunk16: np.ndarray, ahead: np.ndarray | None = None) -> list[SRWindow]:
        """Add 16 kHz samples; return the windows whose output is final now (maybe none).

        `ahead`: a guess of the samples that follow this chunk (never counted as input). While no window has been
        planned and the rule above plans none, the stream's first window (the lead) keeps every whole grid step
        received, taking the right context it lacks from the guess, when the guess is long enough."""
        if self._finished:
            raise RuntimeError("SRPlanner.push after finish()")
        chunk = _as_mono_float32(chunk16)
        if chunk.size:
            self._pending.append(chunk)
            self.samples_in += chunk.size
        out: list[SRWindow] = []
        while True:
            ready = (self.samples_in - self.context) // self.grid * self.grid
            if ready - self._done < self.min_block:
                break
            stop = min(ready, self._done + self.max_block)
            out.append(self._plan(self._done, stop, stop + self.context))
        if not out and ahead is not None and self.windows == 0:
            lead = self._lead(_as_mono_float32(ahead))
            if lead is not None:
                out.append(lead)
        return out

    def _lead(self, ahead: np.ndarray) -> SRWindow | None:
        """The first window over everything received, its missing right context taken from `ahead`; None when
        less than a grid step was received or the guess is too short."""
        stop = min(self.samples_in // self.grid * self.grid, self.max_block)
        missing = max(0, stop + self.context - self.samples_in)  # right context beyond what was received
        if stop < self.grid or ahead.size < missing:
            return None
        window = self._plan(0, stop, stop + self.context, ahead=ahead[:missing])
        self.lead_windows += 1
        return window

    def finish(self) -> list[SRWindow]:
        """The rest, the last window using the true end of the signal as its right boundary."""
        if self._finished:
            return []
        self._finished = True
        pad = -self.samples_in % self.grid
        if pad and self.end_lengths and self._end_start(self.samples_in + pad) is not None:
            self._pending.append(np.zeros(pad, np.float32))
            self.samples_in += pad
            self.end_padding = pad
        out: list[SRWindow] = []
        while self.samples_in - self._done > self.max_block + self.context:
            stop = self._done + self.max_block
            out.append(self._plan(self._done, stop, stop + self.context))
        if self.samples_in > self._done:
            out.append(
                self._plan(
                    self._done,
                    self.samples_in,
                    self.samples_in,
                    true_end=True,
                    start_at=self._end_start(self.samples_in),
                )
            )
        self._pending, self._buf = [], np.zeros(0, np.float32)
        return out

    def _end_start(self, end: int) -> int | None:
        """Where the true end's window starts so that its length is one of `end_lengths`, for a signal ending at
        `end` (None: at its left context, the exact length). Only when the end lies on the grid (the window then
        starts on it, as every window does) and the signal is that long."""
        if end % self.grid:
            return None
        done = self._done
        while end - done > self.max_block + self.context:  # the windows finish() plans before the true end
            done += self.max_block
        needed = end - max(0, done - self.context)
        for length in self.end_lengths:
            if length >= needed:
                return end - length if length <= end else None
        return None

    def _plan(
        self,
        start: int,
        stop: int,
        window_end: int,
        *,
        true_end: bool = False,
        ahead: np.ndarray | None = None,
        start_at: int | None = None,
    ) -> SRWindow:
        """The window over input [start - context, window_end) keeping the output of [start, stop); `ahead`: guessed
        samples appended after the input received (a lead window's right context); `start_at`: the window starts
        there instead (further left: a true end shaped to an end length)."""
        if self._pending:
            self._buf = np.concatenate([self._buf, *self._pending])
            self._pending = []
        a = max(0, start - self.context) if start_at is None else start_at
        b = min(window_end, self.samples_in)
        received = self._buf[a - self._buf_start : b - self._buf_start]
        samples = (
            np.concatenate([received, ahead])
            if ahead is not None and ahead.size
            else np.ascontiguousarray(received)
        )
        keep_from = max(0, stop - self._history)  # only what the next window (or a shaped true end) reads
        # A view, not a copy: `_buf` is never written in place (the next push's concatenate makes a fresh one, and
        # frees what came before), so windows and the rest may share it.
        self._buf = self._buf[keep_from - self._buf_start :]
        self._buf_start = keep_from
        self._done = stop
        self.windows += 1
        self.samples_planned += samples.size
        return SRWindow(samples, RATIO * (start - a), RATIO * (stop - a), true_end)


def _round_up(n: int, step: int) -> int:
    return -(-int(n) // step) * step


def _as_mono_float32(x: np.ndarray) -> np.ndarray:
    raw = np.asarray(x)
    if raw.dtype.kind != "f" and raw.size:  # int16 PCM would silently be 32768x too loud
        raise ValueError(f"expected float samples in [-1, 1], got dtype {raw.dtype}")
    arr = raw.astype(np.float32, copy=False)
    if arr.ndim != 1:
        raise ValueError(f"expected mono 1-D 16 kHz samples, got an array of shape {arr.shape}")
    return arr
