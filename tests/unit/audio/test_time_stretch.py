"""The streaming time-stretch: duration ratio over the whole 0.25-4.0 range (exact to a sample), pitch kept, level
kept, and the same output whatever the chunking, for any input a stream can bring (property-tested: empty pieces,
one-sample pieces, inputs shorter than a frame, silence)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.time_stretch import StreamingTimeStretch

RATE = 16_000


def _tone(seconds: float, hz: float = 180.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _voiced(seconds: float) -> np.ndarray:
    """Speech-like: a pulse train whose pitch glides 110-170 Hz, through a syllable-rate envelope."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = np.cumsum(2 * np.pi * (140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / RATE)
    source = sum(np.sin(h * phase) / h for h in range(1, 25))
    return (0.2 * source * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _run(samples: np.ndarray, speed: float, chunk: int) -> np.ndarray:
    stretch = StreamingTimeStretch(speed)
    parts = [stretch.push(samples[i : i + chunk]) for i in range(0, len(samples), chunk)]
    return np.concatenate([*parts, stretch.finish()])


def _dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * RATE / len(samples))


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.1, 1.25, 1.7, 2.0, 3.0, 4.0])
def test_duration_follows_speed_and_pitch_and_level_stay(speed: float) -> None:
    source = _tone(6.0)
    out = _run(source, speed, 1280)
    assert len(out) == round(len(source) / speed)
    middle = out[len(out) // 4 : 3 * len(out) // 4]
    assert _dominant_hz(middle) == pytest.approx(180.0, abs=4.0)
    assert _rms(middle) == pytest.approx(0.4 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("speed", [0.5, 0.8, 1.1, 1.5, 2.5])
def test_speech_like_audio_keeps_its_level_and_has_no_clicks(speed: float) -> None:
    source = _voiced(4.0)
    out = _run(source, speed, 4000)
    middle = out[len(out) // 8 : 7 * len(out) // 8]
    assert _rms(middle) == pytest.approx(_rms(source), rel=0.08)
    # A frame cut at a bad shift shows as a jump far beyond the source's own sample-to-sample steps.
    assert np.abs(np.diff(middle)).max() < 1.5 * np.abs(np.diff(source)).max()


def test_the_output_does_not_depend_on_how_the_input_is_chunked() -> None:
    source = _tone(2.0) * np.linspace(0.2, 1.0, 32_000, dtype=np.float32)
    whole = _run(source, 1.6, len(source))
    assert np.array_equal(_run(source, 1.6, 320), whole) and np.array_equal(_run(source, 1.6, 4097), whole)


@settings(max_examples=60, deadline=None)
@given(
    speed=st.floats(0.25, 4.0),
    length=st.integers(0, 6_000),
    cuts=st.lists(st.integers(0, 6_000), max_size=8),
    seed=st.integers(0, 2**16),
    silent=st.booleans(),
)
def test_any_input_in_any_pieces_gives_the_whole_input_s_output(
    speed: float, length: int, cuts: list[int], seed: int, silent: bool
) -> None:
    source = (np.zeros(length) if silent else np.random.default_rng(seed).uniform(-1, 1, length)).astype(
        np.float32
    )
    whole = _run(source, speed, max(length, 1))
    bounds = sorted({0, length, *(c for c in cuts if c <= length)})
    stretch = StreamingTimeStretch(speed)
    parts = [stretch.push(source[a:b]) for a, b in pairwise(bounds)] + [stretch.push(source[:0])]
    pieced = np.concatenate([*parts, stretch.finish(), stretch.finish()])  # a second finish adds nothing
    assert len(whole) == round(length / speed) and np.array_equal(pieced, whole)
    assert pieced.dtype == np.float32 and np.isfinite(pieced).all()
    assert np.abs(pieced).max(initial=0.0) <= 1.0001  # each sample is a weighted mean of input samples
    assert not silent or not pieced.any()


def test_speed_outside_the_range_is_refused() -> None:
    with pytest.raises(ValueError, match="0.25..4.0"):
        StreamingTimeStretch(5.0)
