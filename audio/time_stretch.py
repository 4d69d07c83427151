"""Streaming time-stretch (tempo change without a pitch change) of 16 kHz speech, for `speed` on voices whose
prompt has no trained speed control, and for the rest of the way on those that have one.

WSOLA (waveform-similarity overlap-add): output frames of 512 samples (32 ms, about two pitch periods of a low voice)
are laid every `hop_out` samples, each cut from the input near where the tempo puts it (`hop_out x speed` further
along) at the shift, within +-128 samples (one pitch period down to 125 Hz), whose waveform best continues the frame
before, so periods line up and the pitch stays. Hann windows, overlap-added and divided by their summed weight.

Our own, not `audiotsm`: that library (no release since 2017) does the same algorithm with per-frame bookkeeping in
Python that makes 60% of its cost; with it a stretched stream costs 3.3-3.7x the CPU of the rest of its path on the
event loop (bench/bench_time_stretch.py; docs/benchmarks.md, "Per transport, format and rate"). Here a frame is one correlation and a few
slices. Numbers that keep every speed right: the output hop is at most 512 / speed, so the input hop never outgrows a
frame (above 2x a fixed half-frame hop would skip input), and frames are placed on the exact fractional input grid,
so the duration is the input's / speed to a sample. Output is the same whatever the input's chunking (tested), so a
stream equals the complete file.
"""

from __future__ import annotations

import math

import numpy as np

FRAME_SAMPLES = 512
SEARCH = 128  # how far a frame may move from its place on the tempo's grid, each way
MIN_SPEED, MAX_SPEED = 0.25, 4.0
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME_SAMPLES) / FRAME_SAMPLES)).astype(
    np.float32
)  # periodic


class StreamingTimeStretch:
    """float32 chunks in, the same speech `speed` times faster out (0.25..4.0; 2.0 = half the duration)."""

    def __init__(self, speed: float) -> None:
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise ValueError(f"speed must be within {MIN_SPEED}..{MAX_SPEED}, got {speed}")
        self.speed = speed
        self.hop_out = min(FRAME_SAMPLES // 2, int(FRAME_SAMPLES / speed))
        self.hop_in = self.hop_out * speed  # fractional: frame k sits at round(k x hop_in) of the input
        # Silence before the signal so the first real sample is well inside steady overlap-add (full window weight);
        # the output for it is dropped.
        self._lead = math.ceil(FRAME_SAMPLES * speed) + SEARCH
        self._skip = round(self._lead / speed)
        self._input = np.zeros(self._lead, np.float32)  # the input from `_input_at` on, the lead included
        self._input_at = 0
        self._received = 0  # real samples pushed
        self._next_frame = 0
        self._previous = 0  # where the last frame was cut from the input
        self._sum = np.zeros(FRAME_SAMPLES, np.float32)  # overlap-added frames from output `_sum_at` on
        self._weight = np.zeros(FRAME_SAMPLES, np.float32)  # their windows' summed weight
        self._sum_at = 0
        self._end: int | None = None  # the output's length, once finished

    def push(self, samples: np.ndarray) -> np.ndarray:
        if samples.size:
            self._received += samples.size
            self._input = np.concatenate([self._input, np.asarray(samples, np.float32).ravel()])
        return self._run()

    def finish(self) -> np.ndarray:
        """What the stretcher still holds: the rest of the output, `received / speed` samples in all."""
        if self._end is None:
            self._end = self._skip + round(self._received / self.speed)
            last = -(-self._end // self.hop_out)  # frames up to this one cover the whole output
            needed = (
                round(last * self.hop_in) + 2 * SEARCH + 2 * FRAME_SAMPLES
            )  # their inputs, with room to search
            pad = needed - (self._input_at + self._input.size)
            if pad > 0:
                self._input = np.concatenate([self._input, np.zeros(pad, np.float32)])
        return self._run()

    def _run(self) -> np.ndarray:
        n, hop_out = FRAME_SAMPLES, self.hop_out
        have = self._input_at + self._input.size
        # Frames whose search reaches no further than the input so far: at most this many (the exact test is below).
        frames = max(0, math.floor((have - n - SEARCH) / self.hop_in) + 1 - self._next_frame)
        if frames:
            grow = self._next_frame * hop_out + (frames - 1) * hop_out + n - (self._sum_at + self._sum.size)
            if grow > 0:
                self._sum = np.concatenate([self._sum, np.zeros(grow, np.float32)])
                self._weight = np.concatenate([self._weight, np.zeros(grow, np.float32)])
        x, x_at = self._input, self._input_at
        k, previous = self._next_frame, self._previous
        for _ in range(frames):
            place = round(k * self.hop_in)
            if k == 0:
                start = place
            else:
                follow = previous + hop_out  # what would naturally come next after the last frame
                lo, hi = max(place - SEARCH, 0), place + SEARCH
                if max(hi, follow) + n > have:
                    break
                natural = x[follow - x_at : follow - x_at + n]
                scores = np.correlate(x[lo - x_at : hi + n - x_at], natural, "valid")
                start = lo + int(np.argmax(scores))
            out = k * hop_out - self._sum_at
            self._sum[out : out + n] += x[start - x_at : start - x_at + n] * _WINDOW
            self._weight[out : out + n] += _WINDOW
            previous = start
            k += 1
        self._next_frame, self._previous = k, previous
        return self._take(k * hop_out)

    def _take(self, ready: int) -> np.ndarray:
        """The output before `ready` (no later frame reaches back there), less the lead's, up to the end."""
        if self._end is not None:
            ready = min(ready, self._end)
        take = ready - self._sum_at
        if take <= 0:
            return np.zeros(0, np.float32)
        out = self._sum[:take] / np.maximum(self._weight[:take], 1e-6)
        self._sum, self._weight, self._sum_at = self._sum[take:], self._weight[take:], ready
        # Input before the last frame's start minus the search room is never read again.
        keep_from = min(self._previous, round(self._next_frame * self.hop_in) - SEARCH) - self._input_at
        if keep_from > 0:
            self._input, self._input_at = self._input[keep_from:], self._input_at + keep_from
        first = max(self._skip - (ready - take), 0)
        return out[first:].astype(np.float32, copy=False)
