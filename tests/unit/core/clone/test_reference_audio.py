"""Reference audio decoding for cloning: the files users actually upload decode to 16 kHz channel 0, and every file
that cannot be a reference is refused with its own public error code before any model work."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from core.clone.reference_audio import ReferenceAudioError, decode_reference_audio
from services.errors import ERROR_CODES


def voiced(seconds: float, rate: int, f0: float = 140.0) -> np.ndarray:
    """A speech-like harmonic signal with a slow amplitude envelope."""
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    return (0.3 * signal / 2.6 * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def encode(samples: np.ndarray, rate: int, container: str, codec: str, *, channels: int = 1) -> bytes:
    """Write `samples` (mono, or stereo with a quiet noise second channel) with libav."""
    layout = "mono" if channels == 1 else "stereo"
    data = samples.reshape(1, -1)
    if channels == 2:
        other = np.random.default_rng(0).normal(0, 0.01, samples.size).astype(np.float32)
        data = np.stack([samples, other]).T.reshape(1, -1)  # packed
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        fmt = stream.codec_context.format.name
        frame = av.AudioFrame.from_ndarray(data.astype(np.float32), format="flt", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def wav_with_format_tag(tag: int, payload: bytes, rate: int = 16000) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, 1, rate, rate * 2, 2, 16)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(payload))
        + payload
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def refused(data: bytes, **limits) -> ReferenceAudioError:
    with pytest.raises(ReferenceAudioError) as caught:
        decode_reference_audio(data, **limits)
    assert caught.value.code in ERROR_CODES  # every refusal is a public error code
    return caught.value


def test_float_wav_at_16k_is_read_exactly():
    samples = voiced(2.0, 16000)
    reference = decode_reference_audio(encode(samples, 16000, "wav", "pcm_f32le"))
    assert reference.samples.dtype == np.float64
    assert np.array_equal(reference.samples, samples.astype(np.float64))
    assert (reference.source_sample_rate, reference.source_channels, reference.duration_s) == (16000, 1, 2.0)


def test_stereo_44k_keeps_channel_zero_at_16k():
    samples = voiced(3.0, 44100)
    reference = decode_reference_audio(encode(samples, 44100, "wav", "pcm_s16le", channels=2))
    assert reference.source_channels == 2 and reference.source_sample_rate == 44100
    assert abs(reference.samples.size - 48000) <= 1
    expected = voiced(3.0, 16000).astype(np.float64)
    n = min(expected.size, reference.samples.size)
    # Channel 0 resampled, not a downmix with the noise channel: near-identical to the signal made at 16 kHz.
    assert np.corrcoef(expected[1000 : n - 1000], reference.samples[1000 : n - 1000])[0, 1] > 0.999


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [
        ("flac", "flac", 48000),
        ("mp3", "libmp3lame", 44100),
        ("ogg", "libopus", 48000),
        ("webm", "libopus", 48000),
        ("ipod", "aac", 44100),
        ("ogg", "libopus", 24000),
        ("wav", "pcm_s16le", 8000),
        ("wav", "pcm_mulaw", 8000),
    ],
    ids=["flac", "mp3", "ogg-opus", "webm-opus-mediarecorder", "m4a-aac", "opus-24k", "phone-8k", "mulaw"],
)
def test_common_uploads_decode_to_16k(container, codec, rate):
    reference = decode_reference_audio(encode(voiced(4.0, rate), rate, container, codec))
    assert reference.source_sample_rate == (
        48000 if codec == "libopus" else rate
    )  # Opus always decodes at 48 kHz
    assert abs(reference.duration_s - 4.0) < 0.12  # encoder priming/padding
    assert 0.05 < float(np.max(np.abs(reference.samples))) < 1.0


def test_length_limits():
    assert refused(encode(voiced(0.6, 16000), 16000, "wav", "pcm_s16le")).code == "AUDIO_TOO_SHORT"
    error = refused(encode(voiced(31.0, 16000), 16000, "flac", "flac"))
    assert error.code == "AUDIO_TOO_LONG" and "30 s" in error.message
    # Decoding stops at the limit: ten minutes of audio are refused without being decoded whole.
    assert refused(encode(voiced(600.0, 8000), 8000, "flac", "flac")).code == "AUDIO_TOO_LONG"
    assert decode_reference_audio(encode(voiced(1.2, 16000), 16000, "wav", "pcm_s16le")).duration_s == 1.2


def test_silence_and_bad_samples():
    assert refused(encode(np.zeros(32000, np.float32), 16000, "wav", "pcm_s16le")).code == "AUDIO_SILENT"
    assert refused(encode(np.full(32000, 2e-4, np.float32), 16000, "wav", "pcm_f32le")).code == "AUDIO_SILENT"
    nan = voiced(2.0, 16000)
    nan[100] = np.nan
    assert refused(encode(nan, 16000, "wav", "pcm_f32le")).code == "INVALID_AUDIO"


def test_files_that_are_not_audio():
    assert refused(b"").code == "INVALID_AUDIO"
    assert refused(b"hello, this is a text file\n" * 50).code == "INVALID_AUDIO"
    assert refused(b"\x89PNG\r\n\x1a\n" + bytes(2000)).code == "INVALID_AUDIO"
    assert refused(bytes(range(256)) * 64).code == "INVALID_AUDIO"


def test_unsupported_codec_and_size():
    pcm = (voiced(2.0, 16000) * 32767).astype("<i2").tobytes()
    error = refused(wav_with_format_tag(0xBEEF, pcm))
    assert error.code == "UNSUPPORTED_AUDIO_FORMAT" and ERROR_CODES[error.code][0] == 415
    error = refused(encode(voiced(5.0, 16000), 16000, "wav", "pcm_s16le"), max_bytes=100_000)
    assert error.code == "PAYLOAD_TOO_LARGE" and ERROR_CODES[error.code][0] == 413


def test_a_truncated_upload_keeps_what_decoded():
    whole = encode(voiced(4.0, 16000), 16000, "wav", "pcm_s16le")
    reference = decode_reference_audio(whole[: len(whole) // 2])
    assert 1.9 < reference.duration_s < 2.1
