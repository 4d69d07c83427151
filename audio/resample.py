"""Sample-rate conversion with soxr, one-shot and streaming (no seams between pushes)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import soxr

from audio.pcm import as_mono_float32

# Rates the service offers; 16 kHz is BiCodec's native rate and 48 kHz comes from AP-BWE.
OUTPUT_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 44100, 48000)

Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
_EMPTY = np.zeros(0, dtype=np.float32)


def _check_rate(name: str, rate: int) -> None:
    if not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer sample rate, got {rate!r}")


def resample(samples: np.ndarray, in_rate: int, out_rate: int, quality: Quality = "HQ") -> np.ndarray:
    """One-shot conversion of a whole signal."""
    _check_rate("in_rate", in_rate)
    _check_rate("out_rate", out_rate)
    x = as_mono_float32(samples)
    if in_rate == out_rate:
        return x
    return np.asarray(soxr.resample(x, in_rate, out_rate, quality=quality), dtype=np.float32)


class StreamingResampler:
    """Resample a signal that arrives in pieces; the concatenated output equals the one-shot result.

    soxr keeps its filter state between pushes, so each push returns what it can compute now (a little
    is held back for the filter's look-ahead) and `finish()` returns the tail. Equal rates pass through.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: Quality = "HQ") -> None:
        _check_rate("in_rate", in_rate)
        _check_rate("out_rate", out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )
        self._finished = False

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed input samples; returns the output samples ready now (possibly empty)."""
        if self._finished:
            raise RuntimeError("StreamingResampler already finished")
        x = as_mono_float32(samples)
        if self._stream is None:
            return x
        if len(x) == 0:
            return _EMPTY
        return self._stream.resample_chunk(x, last=False)

    def finish(self) -> np.ndarray:
        """End of input: returns the remaining output."""
        if self._finished:
            raise RuntimeError("StreamingResampler already finished")
        self._finished = True
        if self._stream is None:
            return _EMPTY
        return self._stream.resample_chunk(_EMPTY, last=True)
