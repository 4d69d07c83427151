"""Streaming resampling: pushes of any size give the one-shot result, with no seams and the right length."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from audio.resample import OUTPUT_RATES, StreamingResampler, resample


def _chirp(rate: int, seconds: float = 1.3) -> np.ndarray:
    t = np.arange(int(rate * seconds) + 3) / rate
    return (0.5 * np.sin(2 * np.pi * (100 + 1500 * t) * t)).astype(np.float32)


def _stream(rs: StreamingResampler, x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(x):
        k = int(rng.integers(1, 2000))
        out.append(rs.push(x[i : i + k]))
        i += k
    out.append(rs.finish())
    return np.concatenate(out)


@pytest.mark.parametrize("in_rate", [16000, 48000])
@pytest.mark.parametrize("out_rate", OUTPUT_RATES)
def test_streamed_equals_one_shot(in_rate: int, out_rate: int) -> None:
    x = _chirp(in_rate)
    y = _stream(StreamingResampler(in_rate, out_rate), x, seed=in_rate + out_rate)
    assert y.dtype == np.float32
    assert abs(len(y) - round(len(x) * out_rate / in_rate)) <= 1
    reference = soxr.resample(x, in_rate, out_rate, quality="HQ")
    n = min(len(y), len(reference))
    assert np.max(np.abs(y[:n] - reference[:n])) < 1e-5


def test_no_seams_between_pushes() -> None:
    # A pure tone resampled in tiny pushes: every sample matches the ideal tone (no clicks at boundaries).
    rate_in, rate_out = 16000, 48000
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate_in) / rate_in)).astype(np.float32)
    y = _stream(StreamingResampler(rate_in, rate_out), x, seed=1)
    ideal = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / rate_out)
    middle = slice(2000, len(y) - 2000)  # away from the filter's start/end transients
    assert np.max(np.abs(y[middle] - ideal[middle])) < 1e-3


def test_equal_rates_pass_through() -> None:
    rs = StreamingResampler(16000, 16000)
    x = _chirp(16000, 0.1)
    assert rs.passthrough
    assert np.array_equal(rs.push(x), x)
    assert len(rs.finish()) == 0
    assert np.array_equal(resample(x, 16000, 16000), x)


def test_output_arrives_while_streaming() -> None:
    rs = StreamingResampler(48000, 16000)
    got = sum(len(rs.push(_chirp(48000, 0.04))) for _ in range(10))
    assert got > 0.3 * 16000  # most of 0.4 s already out before finish()


def test_bad_rates_and_reuse_are_refused() -> None:
    with pytest.raises(ValueError):
        StreamingResampler(0, 16000)
    with pytest.raises(ValueError):
        StreamingResampler(16000, 22050.5)  # type: ignore[arg-type]
    rs = StreamingResampler(16000, 8000)
    rs.finish()
    with pytest.raises(RuntimeError):
        rs.push(np.zeros(10, np.float32))
