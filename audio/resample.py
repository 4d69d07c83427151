"""Sample-rate conversion of the output path, one-shot and streaming (no seams between pushes): the low-delay
polyphase filter of `audio.polyphase`, which holds back 1-6 ms of a stream where soxr's streaming mode held 14-128 ms
(that module says why). Input audio (cloning references) keeps soxr: core/clone/reference_audio.py."""

from __future__ import annotations

import numpy as np

from audio.pcm import as_mono_float32
from audio.polyphase import PolyphaseResampler, block_plan

# Rates the service offers; 16 kHz is BiCodec's native rate and 48 kHz comes from AP-BWE.
OUTPUT_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 44100, 48000)

_EMPTY = np.zeros(0, dtype=np.float32)


def _check_rate(name: str, rate: int) -> None:
    if not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer sample rate, got {rate!r}")


def prepare_output_filters(source_rates: tuple[int, ...] = (16000, 48000)) -> int:
    """Design every output conversion's filter now, once per process (start-up), so that no stream's first push pays
    for it on the event loop (5-7 ms at 22.05 / 44.1 kHz). Returns how many conversions were designed."""
    pairs = [(a, b) for a in source_rates for b in OUTPUT_RATES if a != b]
    for a, b in pairs:
        block_plan(a, b)
    return len(pairs)


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """One-shot conversion of a whole signal: the same samples as streaming it in pieces."""
    rs = StreamingResampler(in_rate, out_rate)
    x = as_mono_float32(samples)
    if rs.passthrough:
        return x
    return np.concatenate([rs.push(x), rs.finish()])


class StreamingResampler:
    """Resample a signal that arrives in pieces; the concatenated output equals the one-shot result (to float
    rounding), whatever the pieces. Each push returns every output sample whose filter inputs have arrived: at most
    `delay_samples` input samples are held back. `finish()` returns the tail. Equal rates pass through."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        _check_rate("in_rate", in_rate)
        _check_rate("out_rate", out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._filter = None if in_rate == out_rate else PolyphaseResampler(in_rate, out_rate)
        self._finished = False

    @property
    def passthrough(self) -> bool:
        return self._filter is None

    @property
    def delay_samples(self) -> int:
        """Input samples a push may hold back (0 when passing through)."""
        return 0 if self._filter is None else self._filter.delay_samples

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed input samples; returns the output samples ready now (possibly empty)."""
        if self._finished:
            raise RuntimeError("StreamingResampler already finished")
        x = as_mono_float32(samples)
        if self._filter is None:
            return x
        if len(x) == 0:
            return _EMPTY
        return self._filter.push(x)

    def finish(self) -> np.ndarray:
        """End of input: returns the remaining output."""
        if self._finished:
            raise RuntimeError("StreamingResampler already finished")
        self._finished = True
        if self._filter is None:
            return _EMPTY
        return self._filter.finish()
