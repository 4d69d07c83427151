"""The streaming time-stretch: duration ratio over the whole 0.25-4.0 range, pitch kept, level kept, and the
same output whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest

from audio.time_stretch import StreamingTimeStretch

RATE = 16_000


def _tone(seconds: float, hz: float = 180.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _run(samples: np.ndarray, speed: float, chunk: int) -> np.ndarray:
    stretch = StreamingTimeStretch(speed)
    parts = [stretch.push(samples[i:i + chunk]) for i in range(0, len(samples), chunk)]
    return np.concatenate([*parts, stretch.finish()])


def _dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * RATE / len(samples))


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.25, 1.7, 2.0, 3.0, 4.0])
def test_duration_follows_speed_and_pitch_and_level_stay(speed: float) -> None:
    source = _tone(6.0)
    out = _run(source, speed, 1280)
    assert len(out) / len(source) == pytest.approx(1 / speed, rel=0.02)
    middle = out[len(out) // 4: 3 * len(out) // 4]
    assert _dominant_hz(middle) == pytest.approx(180.0, abs=4.0)
    assert float(np.sqrt(np.mean(middle ** 2))) == pytest.approx(0.4 / np.sqrt(2), rel=0.05)


def test_the_output_does_not_depend_on_how_the_input_is_chunked() -> None:
    source = _tone(2.0) * np.linspace(0.2, 1.0, 32_000, dtype=np.float32)
    whole = _run(source, 1.6, len(source))
    assert np.array_equal(_run(source, 1.6, 320), whole) and np.array_equal(_run(source, 1.6, 4097), whole)


def test_speed_outside_the_range_is_refused() -> None:
    with pytest.raises(ValueError, match="0.25..4.0"):
        StreamingTimeStretch(5.0)
