"""Reference recordings as users send them, made here: a synthetic voiced signal (a 130 Hz harmonic series with
vibrato and syllable-like loudness) written as WAV at any rate and channel count, or encoded with PyAV the way a
browser's MediaRecorder (WebM/Opus), a phone app (MP3, 8 kHz) or a voice memo (M4A/AAC) writes it."""

from __future__ import annotations

import io
import wave

import numpy as np


def voiced(seconds: float, rate: int = 16_000, *, f0: float = 130.0, seed: int = 0) -> np.ndarray:
    """Mono float32 in [-0.5, 0.5]: something a speaker encoder treats like a voice (not a pure tone)."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 12) if k * f0 < rate / 2)
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 3.7 * t) ** 2
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    signal = harmonics * syllables + noise
    return (0.5 * signal / np.max(np.abs(signal))).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = 16_000, channels: int = 1) -> bytes:
    """16-bit PCM WAV; channels > 1 repeat the signal (channel 0 is what the encoder keeps)."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    frames = np.repeat(pcm[:, None], channels, axis=1).reshape(-1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())
    return buffer.getvalue()


def encoded(
    samples: np.ndarray,
    rate: int,
    container: str,
    codec: str,
    *,
    out_rate: int | None = None,
    channels: int = 1,
) -> bytes:
    """`samples` (mono float at `rate`) encoded with PyAV into `container`/`codec` (e.g. webm/libopus, mp3/libmp3lame,
    ipod/aac)."""
    import av

    out_rate = out_rate or rate
    if out_rate != rate:
        import soxr

        samples = soxr.resample(samples, rate, out_rate).astype(np.float32)
    buffer = io.BytesIO()
    layout = "mono" if channels == 1 else "stereo"
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        planar = np.repeat(samples[None, :], channels, axis=0).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = out_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def browser_webm_opus(seconds: float = 4.0) -> bytes:
    """What Chrome's MediaRecorder uploads: WebM with Opus at 48 kHz."""
    return encoded(voiced(seconds, 48_000), 48_000, "webm", "libopus")


def stereo_44k_wav(seconds: float = 4.0) -> bytes:
    return wav_bytes(voiced(seconds, 44_100), 44_100, channels=2)


def phone_8k_wav(seconds: float = 4.0) -> bytes:
    return wav_bytes(voiced(seconds, 8_000, f0=110.0), 8_000)


def mp3(seconds: float = 4.0) -> bytes:
    return encoded(voiced(seconds, 44_100), 44_100, "mp3", "libmp3lame")


def wav_with_codec_tag(tag: int, seconds: float = 2.0, rate: int = 16_000) -> bytes:
    """A RIFF/WAVE file whose fmt chunk names codec `tag` (e.g. 0xBEEF, which no decoder knows) over PCM bytes."""
    import struct

    payload = (voiced(seconds, rate) * 32767).astype("<i2").tobytes()
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


# Streamed == offline holds within 1e-4 of full scale (~3 int16 steps), not bit for bit: when windows meet in the codec
# scheduler (two streams', or one stream's when an engine delta plans several) they are batched (rows padded, masked),
# and a convolution rounds differently at another batch or length, which can move a sample one step.
SAME_AUDIO_STEPS = 4


def assert_same_audio(a: bytes, b: bytes, steps: int = SAME_AUDIO_STEPS) -> None:
    """Two WAV answers hold the same speech: equal length, samples at most `steps` int16 steps apart."""

    def pcm(data: bytes) -> bytes:
        with wave.open(io.BytesIO(data)) as reader:
            return reader.readframes(reader.getnframes())

    assert_same_pcm(pcm(a), pcm(b), steps)


def assert_same_pcm(a: bytes, b: bytes, steps: int = SAME_AUDIO_STEPS) -> None:
    """Two raw 16-bit PCM answers hold the same speech: equal length, samples at most `steps` int16 steps apart (a
    lost, repeated or regenerated piece moves far more)."""
    left, right = (np.frombuffer(x, dtype="<i2").astype(np.int32) for x in (a, b))
    assert left.shape == right.shape
    apart = np.abs(left - right)
    worst = int(apart.max(initial=0))
    assert worst <= steps, (
        f"{worst} steps apart at sample {int(apart.argmax())} of {left.size}; "
        f"{int((apart > 0).sum())} samples differ, from {int(np.argmax(apart > 0))}"
    )
