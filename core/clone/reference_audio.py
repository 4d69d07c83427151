"""Reference audio for voice cloning: any common container/codec -> 16 kHz mono float, checked for what the
encoder needs (docs/reference/spark-tts.md#bicodec-encode-reference-audio-to-voice-tokens).

Decoding is PyAV (libav): WAV, FLAC, MP3, Ogg/Opus/Vorbis, AAC/M4A and the WebM/Opus a browser's MediaRecorder
writes all go through one path. Like upstream, channel 0 is kept (a downmix would change the tokens upstream
computes for the same file), and the rate is converted with soxr's "VHQ" quality, in float64 as upstream does.

Every refusal is a `ReferenceAudioError` with a public error code, so the service can answer 4xx naming the
problem before any model work. Decoding stops as soon as the audio is longer than allowed, so a small file that
decodes to hours of audio costs no more than the limit. Memory is bounded whatever a container or a frame declares:
the rate is the first decoded frame's, a frame at another rate (FLAC lets each frame carry its own) is refused
rather than resampled at the wrong ratio, and only rates in [MIN_SOURCE_RATE, MAX_SOURCE_RATE] are accepted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import soxr

if TYPE_CHECKING:  # av is imported when a reference is decoded, not with this module
    import av

ENCODER_SAMPLE_RATE = 16_000
MIN_REFERENCE_SECONDS = 1.0
MAX_REFERENCE_SECONDS = 30.0
MAX_REFERENCE_BYTES = 20 * 2**20
# A reference whose loudest sample is below -60 dBFS carries no voice; upstream's volume normalisation would
# amplify its noise floor by up to 100x (it divides by max(peak, 1e-3)).
SILENCE_PEAK = 1e-3
# Accepted source rates. Below 4 kHz no speech band survives; above 192 kHz nothing is gained, and the cap bounds the
# largest decode: 30.5 s x 192 kHz of float64 is 47 MB before the one-shot resample.
MIN_SOURCE_RATE = 4_000
MAX_SOURCE_RATE = 192_000


class ReferenceAudioError(ValueError):
    """Reference audio the encoder cannot use; `code` is the public error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ReferenceAudio:
    """Decoded reference: channel 0 at 16 kHz, float64 as upstream hands it to volume normalisation."""

    samples: np.ndarray
    source_sample_rate: int
    source_channels: int
    codec: str

    @property
    def duration_s(self) -> float:
        return self.samples.size / ENCODER_SAMPLE_RATE


def _first_channel(frame: av.AudioFrame) -> np.ndarray:
    """Channel 0 of a decoded frame as float64 in [-1, 1], whatever the sample format."""
    data = frame.to_ndarray()
    planar = frame.format.is_planar
    channels = len(frame.layout.channels)
    channel = data[0] if planar else data.reshape(-1, channels)[:, 0] if data.ndim == 2 else data[::channels]
    name = frame.format.name.rstrip("p")
    if name in ("flt", "dbl"):
        return np.asarray(channel, dtype=np.float64)
    scale = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}.get(name)
    if scale is None:
        raise ReferenceAudioError(
            "UNSUPPORTED_AUDIO_FORMAT", f"sample format {frame.format.name} is not supported"
        )
    values = np.asarray(channel, dtype=np.float64)
    return (values - 128.0) / 128.0 if name == "u8" else values / scale


def _checked_rate(rate: int) -> int:
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise ReferenceAudioError(
            "INVALID_AUDIO",
            f"the audio's sample rate is {rate} Hz; accepted rates are "
            f"{MIN_SOURCE_RATE} to {MAX_SOURCE_RATE} Hz",
        )
    return rate


def decode_reference_audio(
    data: bytes,
    *,
    min_seconds: float = MIN_REFERENCE_SECONDS,
    max_seconds: float = MAX_REFERENCE_SECONDS,
    max_bytes: int = MAX_REFERENCE_BYTES,
) -> ReferenceAudio:
    """Decode an uploaded file; raise ReferenceAudioError (with the reason) when it cannot be a reference."""
    import av

    if len(data) > max_bytes:
        raise ReferenceAudioError(
            "PAYLOAD_TOO_LARGE",
            f"the audio file is {len(data)} bytes; at most {max_bytes} bytes are accepted",
        )
    if not data:
        raise ReferenceAudioError("INVALID_AUDIO", "the audio file is empty")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise ReferenceAudioError(
            "INVALID_AUDIO",
            "the file is not audio in a known container "
            "(accepted: WAV, FLAC, MP3, Ogg/Opus/Vorbis, M4A/AAC, WebM)",
        ) from exc
    with container:
        streams = container.streams.audio
        if not streams:
            raise ReferenceAudioError("INVALID_AUDIO", "the file holds no audio stream")
        stream = streams[0]
        if stream.codec_context is None:  # libav knows the container but has no decoder for this codec
            tag = f"codec tag {stream.codec_tag!r}" if getattr(stream, "codec_tag", None) else "unknown codec"
            raise ReferenceAudioError(
                "UNSUPPORTED_AUDIO_FORMAT",
                f"the audio codec ({tag}) is not supported; send WAV, FLAC, MP3, Opus, Vorbis or AAC",
            )
        codec_name = stream.codec_context.name
        rate = int(stream.codec_context.sample_rate or 0)
        channels = int(stream.codec_context.channels or 0)
        if rate <= 0:
            raise ReferenceAudioError("INVALID_AUDIO", "the audio stream has no sample rate")
        _checked_rate(rate)
        pieces: list[np.ndarray] = []
        total = 0
        first_rate = 0
        try:
            for frame in container.decode(stream):
                frame_rate = int(frame.sample_rate or rate)
                if not first_rate:
                    first_rate = rate = _checked_rate(frame_rate)
                elif frame_rate != first_rate:
                    raise ReferenceAudioError(
                        "INVALID_AUDIO",
                        f"the sample rate changes mid-stream ({first_rate} Hz, then {frame_rate} Hz);"
                        " send audio at one sample rate",
                    )
                piece = _first_channel(frame)
                pieces.append(piece)
                total += piece.size
                if total > int((max_seconds + 0.5) * rate):
                    raise ReferenceAudioError(
                        "AUDIO_TOO_LONG",
                        f"the reference is longer than {max_seconds:g} s; send {max_seconds:g} s "
                        "or less (6-15 s of clear speech works best)",
                    )
        except ReferenceAudioError:
            raise
        except av.error.DecoderNotFoundError as exc:
            raise ReferenceAudioError(
                "UNSUPPORTED_AUDIO_FORMAT", f"the audio codec {codec_name!r} is not supported"
            ) from exc
        except (av.error.FFmpegError, ValueError) as exc:
            if not pieces:
                raise ReferenceAudioError(
                    "INVALID_AUDIO", f"the audio could not be decoded ({codec_name})"
                ) from exc
            # A truncated upload: keep what decoded, as players do; the length checks below still apply.
    samples = np.concatenate(pieces) if pieces else np.zeros(0)
    if not np.all(np.isfinite(samples)):
        raise ReferenceAudioError("INVALID_AUDIO", "the audio holds NaN or infinite samples")
    if rate != ENCODER_SAMPLE_RATE and samples.size:
        samples = np.asarray(
            soxr.resample(samples, rate, ENCODER_SAMPLE_RATE, quality="VHQ"), dtype=np.float64
        )
    duration = samples.size / ENCODER_SAMPLE_RATE
    if duration < min_seconds:
        raise ReferenceAudioError(
            "AUDIO_TOO_SHORT",
            f"the reference is {duration:.2f} s long; at least "
            f"{min_seconds:g} s of speech is needed (6-15 s works best)",
        )
    if duration > max_seconds:
        raise ReferenceAudioError(
            "AUDIO_TOO_LONG",
            f"the reference is {duration:.1f} s long; send {max_seconds:g} s "
            "or less (6-15 s of clear speech works best)",
        )
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise ReferenceAudioError(
            "AUDIO_SILENT",
            "the reference is silent (its loudest sample is below -60 dBFS); record closer to the microphone",
        )
    return ReferenceAudio(
        samples=samples, source_sample_rate=rate, source_channels=channels, codec=codec_name
    )
