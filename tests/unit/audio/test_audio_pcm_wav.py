"""PCM conversion and WAV headers: the bytes a client receives parse as the audio that was sent."""

from __future__ import annotations

import io
import wave

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from audio.pcm import float_to_int16, float_to_s16le, int16_to_float, s16le_to_float, unit_float_to_s16le
from audio.wav import (
    STREAMING_SIZE,
    WAV_HEADER_BYTES,
    complete_wav,
    patch_wav_sizes,
    read_wav_header,
    wav_header,
)


def _sine(n: int, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)


def test_float_to_int16_scales_rounds_and_clips() -> None:
    x = np.array([0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 1e-5, -1e-5], dtype=np.float32)
    assert float_to_int16(x).tolist() == [0, 32767, -32767, 16384, 32767, -32768, 0, 0]


@settings(max_examples=200, deadline=None)
@given(
    x=hnp.arrays(
        np.float32, st.integers(0, 300), elements=st.floats(width=32, allow_nan=False, allow_infinity=True)
    )
)
def test_the_encoders_conversion_is_the_clipped_conversion(x) -> None:
    """The sample-wise encoders' one-step conversion gives the bytes of clipping to [-1, 1] and then converting, for
    any float32 input (out of range, infinite, subnormal, exactly +-1 and at the rounding midpoints)."""
    edges = np.array(
        [1.0, -1.0, 0.5 / 32767, -0.5 / 32767, 1.5 / 32767, np.nextafter(1, 2), -2.0], np.float32
    )
    for samples in (x, edges):
        assert unit_float_to_s16le(samples) == float_to_s16le(np.clip(samples, -1, 1))


def test_s16le_round_trip_is_within_half_a_step() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, 5000).astype(np.float32)
    data = float_to_s16le(x)
    assert len(data) == 2 * len(x)
    assert np.frombuffer(data, "<i2")[0] == float_to_int16(x)[0]
    y = s16le_to_float(data)
    assert y.dtype == np.float32
    assert np.max(np.abs(y - x)) <= 0.5 / 32767 + 1e-7


def test_int16_to_float_stays_in_range_and_inverts_exactly() -> None:
    pcm = np.array([-32768, -32767, 0, 1, 32767], dtype=np.int16)
    y = int16_to_float(pcm)
    assert y.min() >= -1.0 and y.max() <= 1.0
    assert float_to_int16(y[1:]).tolist() == pcm[1:].tolist()


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        s16le_to_float(b"\x00\x01\x02")
    with pytest.raises(ValueError):
        float_to_s16le(np.zeros((2, 10), dtype=np.float32))
    with pytest.raises(ValueError):
        float_to_s16le(np.zeros(10, dtype=np.int16))


def test_streaming_header_has_unknown_sizes() -> None:
    h = wav_header(24000)
    assert len(h) == WAV_HEADER_BYTES
    info = read_wav_header(h)
    assert info.streaming
    assert info.riff_size == STREAMING_SIZE and info.data_size == STREAMING_SIZE
    assert (info.format_tag, info.num_channels, info.sample_rate, info.bits_per_sample) == (1, 1, 24000, 16)
    assert h[28:32] == (24000 * 2).to_bytes(4, "little")  # byte rate
    assert h[32:34] == (2).to_bytes(2, "little")  # block align


def test_complete_wav_reads_back_with_the_wave_module() -> None:
    x = _sine(16000)
    data = complete_wav(float_to_s16le(x), 16000)
    info = read_wav_header(data)
    assert info.data_size == 32000 and info.riff_size == len(data) - 8
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 16000)
        frames = w.readframes(16000)
    assert np.allclose(s16le_to_float(frames), x, atol=1e-4)


def test_streamed_wav_parses_with_pyav_as_is_and_wave_after_patching() -> None:
    x = _sine(8000, rate=22050)
    streamed = wav_header(22050) + float_to_s16le(x)
    with av.open(io.BytesIO(streamed)) as c:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        assert c.streams.audio[0].sample_rate == 22050
    assert len(decoded) == 8000
    with wave.open(io.BytesIO(streamed)) as w:  # a strict reader believes the 4 GiB placeholder...
        assert w.getnframes() == STREAMING_SIZE // 2
    with wave.open(io.BytesIO(patch_wav_sizes(streamed))) as w:  # ...until the sizes are patched
        assert w.getnframes() == 8000 and w.getframerate() == 22050
        assert np.allclose(s16le_to_float(w.readframes(8000)), x, atol=1e-4)


def test_mulaw_wav_header_and_odd_length_padding() -> None:
    h = wav_header(8000, fmt="mulaw", data_bytes=101)
    info = read_wav_header(h)
    assert (info.format_tag, info.bits_per_sample, info.data_size, info.riff_size) == (7, 8, 101, 36 + 102)
    assert h[28:32] == (8000).to_bytes(4, "little")
    data = complete_wav(bytes(101), 8000, fmt="mulaw")
    assert len(data) == 44 + 102  # RIFF chunks are word aligned
    with av.open(io.BytesIO(data)) as c:
        assert c.streams.audio[0].codec_context.name == "pcm_mulaw"
        assert sum(f.samples for f in c.decode(audio=0)) == 101


def test_header_validation() -> None:
    with pytest.raises(ValueError, match="8 bits"):
        wav_header(8000, bits_per_sample=16, fmt="mulaw")
    with pytest.raises(ValueError, match="accepted"):
        wav_header(8000, fmt="alaw")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        wav_header(0)
    with pytest.raises(ValueError):
        read_wav_header(b"RIFX" + bytes(40))
