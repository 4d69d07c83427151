"""A low-delay streaming resampler: a linear-phase windowed-sinc FIR run as a polyphase filter, as BLAS matrix
products.

Why not soxr here: soxr's streaming mode releases its output in blocks, so it holds back far more than its filter
needs: 66 ms at 16 -> 8 kHz (the first 120 ms of input give no output at all, so a stream's 80 ms first chunk left as
nothing and telephony's first audio waited for the second chunk), 32 ms at 48 -> 24 kHz, 31 ms at 48 -> 22.05 kHz
(bench/bench_resampler.py). This filter holds back only its half-width: 6.25 ms at 16 -> 8 kHz, about 2 ms from
48 kHz. soxr costs less CPU per second of audio; bench/bench_resampler.py sets both side by side.

The filter (`design_lowpass`): a Kaiser-windowed sinc at the upsampled rate, its passband to 90% of the lower rate's
Nyquist frequency, its stopband from that Nyquist frequency on, attenuated by 80 dB (16-bit PCM's floor is 96 dB
below full scale; speech holds little energy in the top 10% of the band, so what aliases into it lies far below
that). The output is aligned with the input (output sample n is input time n * in_rate / out_rate, no delay), and
pushes of any sizes give the same samples as one push of everything, to float rounding.

How it runs: out/in = L/M in lowest terms. Output n reads the inputs within the filter's half-width of its time. A
block of B = L * r outputs reads a window of W inputs that starts S = M * r inputs after the previous block's, and
the same matrix [W, B] serves every block, so the ready blocks are products of a [blocks, W] strided view of the
input (64 blocks at a time, copied: `_BLOCKS_PER_PRODUCT`) with that matrix."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

PASSBAND = 0.9  # of the lower rate's Nyquist frequency
STOPBAND_DB = 80.0
_BLOCK_OUTPUTS = (
    32  # outputs per block where L < 32: fewer zero taps per row than larger blocks, few enough rows
)
_MAX_RATIO_TERM = 1000  # L and M of the conversion in lowest terms
_GROUP_OUTPUTS = 24  # outputs per product where a block holds more (L outputs where L > 32)
# Blocks per product. The blocks' inputs are a strided view whose rows overlap (S apart, W long), which numpy does not
# hand to BLAS (it needs rows at least as far apart as they are long) but runs in its own loop; a contiguous copy of
# 64 blocks at a time (~70 KB: it stays in the cache) goes to BLAS. In the audio chain, where a push is a whole
# AP-BWE window's output (~800 blocks), that cost 0.57x of one product over the view (docs/benchmarks.md, "The output
# resampler").
_BLOCKS_PER_PRODUCT = 64
_FEW_BLOCKS = (
    8  # fewer blocks than this in a push: one product over the whole window (a call per group cost more)
)
_EMPTY = np.zeros(0, dtype=np.float32)


def design_lowpass(
    up: int, down: int, *, passband: float = PASSBAND, stopband_db: float = STOPBAND_DB
) -> tuple[np.ndarray, int]:
    """The prototype filter at the upsampled rate (`up` x the input rate): taps h[-K..K] (float64, gain `up`) and K.

    Kaiser's formulas for the length and the window's beta (Oppenheim and Schafer, 7.6); the cut-off midway through
    the transition band, which runs from `passband` of the lower Nyquist frequency to that frequency."""
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be positive, got {up}/{down}")
    nyquist = 0.5 / max(up, down)  # the lower rate's Nyquist frequency, in cycles per upsampled sample
    f_pass, f_stop = passband * nyquist, nyquist
    cutoff = 0.5 * (f_pass + f_stop)
    beta = 0.1102 * (stopband_db - 8.7)
    half = math.ceil((stopband_db - 7.95) / (2.285 * 2 * math.pi * (f_stop - f_pass)) / 2)
    k = np.arange(-half, half + 1)
    taps = 2 * cutoff * np.sinc(2 * cutoff * k) * np.kaiser(2 * half + 1, beta) * up
    return taps, half


@dataclass(frozen=True)
class OutputGroup:
    """Consecutive outputs of a block [first, end) and the inputs they read: `width` inputs from `offset` (in the
    block's window), through `matrix` [width, end - first]."""

    offset: int
    width: int
    first: int
    end: int
    matrix: np.ndarray  # float32, read-only


@dataclass(frozen=True)
class BlockPlan:
    """What every stream converting in_rate -> out_rate shares: the filter's reach and the block's output groups."""

    up: int
    down: int
    half: int  # the prototype filter's half-width, in upsampled samples
    reach: int  # input samples the filter reads on each side of an output's time
    rows: int  # outputs per block (B)
    step: int  # inputs between one block's window and the next
    width: int  # inputs per block's window (W)
    matrix: np.ndarray  # [W, B] float32, read-only: the whole block in one product (a push of a few blocks)
    groups: tuple[OutputGroup, ...]  # the same, a product per group of outputs (a push of many blocks)


@functools.lru_cache(maxsize=32)
def block_plan(in_rate: int, out_rate: int) -> BlockPlan:
    """Designed once per conversion and shared (read-only) by every stream: at 44.1 / 22.05 kHz the design takes
    5-7 ms, which each new stream would otherwise spend on the event loop."""
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    if (
        max(up, down) > _MAX_RATIO_TERM
    ):  # its prototype filter grows with L and M: 22k taps at 441/160 already
        raise ValueError(
            f"{in_rate} -> {out_rate} Hz is {up}/{down} in lowest terms; this resampler takes ratios "
            f"whose terms are at most {_MAX_RATIO_TERM} (the service's rates: 441/320 at most)"
        )
    taps, half = design_lowpass(up, down)
    reach = -(-half // up)
    rows = up * max(1, _BLOCK_OUTPUTS // up)
    step = down * (rows // up)
    width = step + 2 * reach + 1
    b = np.arange(rows)[:, None]
    j = np.arange(width)[None, :]
    index = b * down - (j - reach) * up + half  # tap index of input j for the block's output b
    inside = (index >= 0) & (index <= 2 * half)
    matrix = np.ascontiguousarray(
        np.where(inside, taps[np.clip(index, 0, 2 * half)], 0.0).T, dtype=np.float32
    )
    matrix.flags.writeable = False
    return BlockPlan(up, down, half, reach, rows, step, width, matrix, _output_groups(matrix, inside.T))


def _output_groups(matrix: np.ndarray, reads: np.ndarray) -> tuple[OutputGroup, ...]:
    """The block's outputs in groups of about _GROUP_OUTPUTS, each with only the band of inputs it reads. A block of
    147 outputs (48 -> 22.05 / 44.1 kHz) spans 2.5x more inputs than each output reads, so one product over the whole
    window multiplied mostly zeros."""
    rows = matrix.shape[1]
    count = max(1, rows // _GROUP_OUTPUTS)
    bounds = [round(i * rows / count) for i in range(count + 1)]
    groups = []
    for first, end in zip(bounds[:-1], bounds[1:], strict=True):
        read = np.flatnonzero(reads[:, first:end].any(axis=1))
        lo, hi = int(read[0]), int(read[-1]) + 1
        part = np.ascontiguousarray(matrix[lo:hi, first:end])
        part.flags.writeable = False
        groups.append(OutputGroup(lo, hi - lo, first, end, part))
    return tuple(groups)


class PolyphaseResampler:
    """One signal, pushed in pieces of any size. `push` returns every output sample whose inputs have all arrived;
    `finish` the rest (zeros after the end, as before the start). Not thread-safe: one per stream."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        plan = block_plan(in_rate, out_rate)
        self.up, self.down = plan.up, plan.down
        self._half, self._reach = plan.half, plan.reach
        self._rows, self._step, self._width = plan.rows, plan.step, plan.width
        self._matrix, self._groups = plan.matrix, plan.groups
        # The input from index _start on lies in _data[_off:_fill]; zeros follow it to the end of _data (and the
        # signal starts with _reach zeros), so a block that reads past the input reads zeros without a copy.
        self._data = np.zeros(4 * self._width + 4096, dtype=np.float32)
        self._off, self._fill, self._start = 0, self._reach, -self._reach
        self.samples_in = 0
        self.samples_out = 0

    @property
    def delay_samples(self) -> int:
        """Input samples a push may hold back at most (the filter's reach): its latency."""
        return self._reach

    def output_length(self, samples_in: int) -> int:
        """Output samples for a whole signal of `samples_in` inputs: ceil(samples_in x out / in)."""
        return -(-samples_in * self.up // self.down)

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return _EMPTY
        self._append(x)
        # output n reads inputs up to floor((n * down + half) / up): the ones that have all arrived
        ready = ((self.samples_in - 1) * self.up - self._half) // self.down + 1
        return self._emit(ready)

    def finish(self) -> np.ndarray:
        return self._emit(self.output_length(self.samples_in))

    def _append(self, x: np.ndarray) -> None:
        room = self._fill + x.size + self._step + self._width  # the blocks read at most this far
        if room > self._data.size:  # move the live input to the front of a (larger) zeroed array
            live = self._data[self._off : self._fill]
            data = np.zeros(
                max(2 * (live.size + x.size) + 2 * self._width, self._data.size), dtype=np.float32
            )
            data[: live.size] = live
            self._data, self._off, self._fill = data, 0, live.size
        self._data[self._fill : self._fill + x.size] = x
        self._fill += x.size
        self.samples_in += x.size

    def _products(self, frames: np.ndarray, blocks: int, rows: int) -> np.ndarray:
        """The blocks' outputs, _BLOCKS_PER_PRODUCT blocks and one output group at a time."""
        out = np.empty((blocks, rows), dtype=np.float32)
        for i in range(0, blocks, _BLOCKS_PER_PRODUCT):
            chunk, into = frames[i : i + _BLOCKS_PER_PRODUCT], out[i : i + _BLOCKS_PER_PRODUCT]
            for g in self._groups:
                inputs = np.ascontiguousarray(chunk[:, g.offset : g.offset + g.width])
                np.matmul(inputs, g.matrix, out=into[:, g.first : g.end])
        return out

    def _emit(self, end: int) -> np.ndarray:
        """Output samples [samples_out, end)."""
        if end <= self.samples_out:
            return _EMPTY
        rows, step = self._rows, self._step
        first = self.samples_out // rows
        blocks = -(-end // rows) - first
        lo = self._off + first * step - self._reach - self._start
        frames = np.ndarray(
            (blocks, self._width), dtype=np.float32, buffer=self._data, offset=4 * lo, strides=(4 * step, 4)
        )
        if blocks < _FEW_BLOCKS:  # a short push: one product over the whole window, not one per group
            out: np.ndarray = np.ascontiguousarray(frames) @ self._matrix
        else:
            out = self._products(frames, blocks, rows)
        out = out.reshape(-1)
        skip = self.samples_out - first * rows
        out = out[skip : skip + end - self.samples_out]
        self.samples_out = end
        drop = (end // rows) * step - self._reach - self._start  # inputs no later block reads
        if drop > 0:
            self._off += drop
            self._start += drop
        return out
