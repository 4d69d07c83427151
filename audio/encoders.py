"""Incremental encoders: one interface for every output format the service streams.

`create_encoder(fmt, rate).push(samples)` returns the bytes that exist now (possibly b""), `flush()` the
rest including trailers. wav / pcm / mulaw / alaw are written here; flac, mp3, opus (Ogg) and aac (ADTS) go
through PyAV into an in-memory sink that is drained after every push, so bytes leave as soon as the
encoder and muxer produce them. In streaming mode nothing holds more than an encoder frame or an Ogg page.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, cast

import av
import numpy as np

from audio.alaw import alaw_encode
from audio.mulaw import mulaw_encode
from audio.pcm import as_mono_float32, unit_float_to_s16le
from audio.wav import complete_wav, wav_header

_STANDARD_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_HIGH_RATES = (64000, 88200, 96000)
# Ogg pages are closed after this much audio; the muxer's default (1 s) would hold a second of opus.
_OGG_PAGE_US = 20_000


@dataclass(frozen=True)
class FormatInfo:
    """What the API needs to know about an output format before doing any work."""

    name: str
    content_type: str
    extension: str
    rates: tuple[int, ...]


# The format names as a type, for the API's schemas; a test holds it equal to FORMATS' keys (a type checker can't
# read a Literal built from a dict at run time).
AudioFormat = Literal["wav", "pcm", "mp3", "opus", "flac", "aac", "mulaw", "alaw"]

FORMATS: dict[str, FormatInfo] = {  # the one format table; AudioFormat above names its keys
    "wav": FormatInfo("wav", "audio/wav", "wav", _STANDARD_RATES + _HIGH_RATES),
    "pcm": FormatInfo("pcm", "audio/pcm", "pcm", _STANDARD_RATES + _HIGH_RATES),
    "mp3": FormatInfo("mp3", "audio/mpeg", "mp3", _STANDARD_RATES),
    "opus": FormatInfo("opus", "audio/ogg", "opus", (8000, 12000, 16000, 24000, 48000)),
    "flac": FormatInfo("flac", "audio/flac", "flac", _STANDARD_RATES + _HIGH_RATES),
    "aac": FormatInfo("aac", "audio/aac", "aac", (7350,) + _STANDARD_RATES + _HIGH_RATES),
    "mulaw": FormatInfo("mulaw", "audio/basic", "ulaw", (8000,)),
    "alaw": FormatInfo("alaw", "audio/x-alaw-basic", "alaw", (8000,)),
}


def format_info(fmt: str) -> FormatInfo:
    """Look up a format by name (case-insensitive); ValueError names the accepted ones."""
    info = FORMATS.get(fmt.lower()) if isinstance(fmt, str) else None
    if info is None:
        raise ValueError(f"unsupported audio format {fmt!r}; accepted: {', '.join(FORMATS)}")
    return info


def supported_rates(fmt: str) -> tuple[int, ...]:
    """Sample rates `fmt` can be encoded at (ascending)."""
    return format_info(fmt).rates


def check_format_rate(fmt: str, sample_rate: int) -> FormatInfo:
    """Validate a format / sample-rate pair; the ValueError lists the accepted rates."""
    info = format_info(fmt)
    if sample_rate not in info.rates:
        accepted = ", ".join(str(r) for r in info.rates)
        raise ValueError(
            f"format {info.name!r} does not support {sample_rate} Hz; accepted sample rates: {accepted}"
        )
    return info


class AudioEncoder(ABC):
    """Float32 mono samples in, encoded bytes out, incrementally."""

    # True when the bytes depend on each sample alone (pcm, wav, mulaw, alaw): pushing frames one by one or joined in
    # one call gives the same bytes, so the audio chain encodes a whole chunk at once (one call, not one per frame).
    sample_wise = False
    clips_itself = False  # `_encode` clips to [-1, 1] on its own (push then skips its clipped copy)

    def __init__(self, info: FormatInfo, sample_rate: int, streaming: bool) -> None:
        self.info = info
        self.sample_rate = sample_rate
        self.streaming = streaming
        self.samples_in = 0
        self.bytes_out = 0
        self._done = False

    @property
    def format(self) -> str:
        return self.info.name

    @property
    def content_type(self) -> str:
        return self.info.content_type

    def push(self, samples: np.ndarray) -> bytes:
        """Encode more samples; returns the bytes available now (possibly b"")."""
        if self._done:
            raise RuntimeError(f"{self.format} encoder already flushed or closed")
        x = as_mono_float32(samples)
        if not self.clips_itself:
            x = np.maximum(x, np.float32(-1.0))  # a copy, clipped to [-1, 1] (NaN stays NaN, as with np.clip)
            np.minimum(x, np.float32(1.0), out=x)
        self.samples_in += len(x)
        out = self._encode(x) if len(x) else b""
        self.bytes_out += len(out)
        return out

    def flush(self) -> bytes:
        """End of audio: returns the remaining bytes, including any trailer. The encoder is done after."""
        if self._done:
            raise RuntimeError(f"{self.format} encoder already flushed or closed")
        self._done = True
        out = self._finish()
        self.bytes_out += len(out)
        self._release()
        return out

    def close(self) -> None:
        """Abandon the stream (client went away): free the encoder's resources without producing trailers."""
        if not self._done:
            self._done = True
            self._release()

    @abstractmethod
    def _encode(self, x: np.ndarray) -> bytes: ...

    @abstractmethod
    def _finish(self) -> bytes: ...

    def _release(self) -> None:
        """Free resources; called once after flush or on close. Nothing to free for the byte formats."""
        return None


class PcmEncoder(AudioEncoder):
    """Raw s16le, no header."""

    sample_wise = True
    clips_itself = True

    def _encode(self, x: np.ndarray) -> bytes:
        return unit_float_to_s16le(x)

    def _finish(self) -> bytes:
        return b""


class G711Encoder(AudioEncoder):
    """Raw G.711 bytes (8 kHz telephony: mu-law, or A-law as Europe's networks carry it), no header."""

    sample_wise = True

    def _encode(self, x: np.ndarray) -> bytes:
        return mulaw_encode(x) if self.info.name == "mulaw" else alaw_encode(x)

    def _finish(self) -> bytes:
        return b""


class WavEncoder(AudioEncoder):
    """Streaming: a 44-byte header with unknown (0xFFFFFFFF) sizes, then PCM as it comes.
    Non-streaming: PCM is collected and the file with exact sizes is returned by `flush()`."""

    sample_wise = True
    clips_itself = True

    def __init__(self, info: FormatInfo, sample_rate: int, streaming: bool) -> None:
        super().__init__(info, sample_rate, streaming)
        self._header_sent = False
        self._parts: list[bytes] = []

    def _encode(self, x: np.ndarray) -> bytes:
        pcm = unit_float_to_s16le(x)
        if not self.streaming:
            self._parts.append(pcm)
            return b""
        return self._with_header(pcm)

    def _finish(self) -> bytes:
        if not self.streaming:
            return complete_wav(b"".join(self._parts), self.sample_rate)
        return self._with_header(b"")  # a stream of no samples is still a valid (empty) WAV

    def _with_header(self, pcm: bytes) -> bytes:
        if self._header_sent:
            return pcm
        self._header_sent = True
        return wav_header(self.sample_rate) + pcm


class _Sink:
    """Write-only, non-seekable file object for PyAV; `drain()` takes what was written so far.

    Being non-seekable tells the muxers not to go back and patch headers, which a stream cannot do."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def drain(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


@dataclass(frozen=True)
class _AVSpec:
    container: str
    encoder: (
        str  # PyAV's name for the format's encoder ("codec" in FFmpeg's terms; here "codec" means BiCodec)
    )
    container_options: dict[str, str]


_AV_SPECS: dict[str, _AVSpec] = {
    "flac": _AVSpec("flac", "flac", {}),
    "mp3": _AVSpec("mp3", "libmp3lame", {}),
    "opus": _AVSpec("ogg", "libopus", {"page_duration": str(_OGG_PAGE_US)}),
    "aac": _AVSpec("adts", "aac", {}),
}


def default_bitrate(fmt: str, sample_rate: int) -> int | None:
    """Bit rate used when a request names none (speech-oriented; None for lossless)."""
    if fmt == "mp3":
        return 32_000 if sample_rate <= 12_000 else 64_000 if sample_rate <= 24_000 else 128_000
    if fmt == "opus":
        return 24_000 if sample_rate <= 16_000 else 64_000
    if fmt == "aac":
        return 48_000 if sample_rate <= 16_000 else 64_000 if sample_rate <= 24_000 else 128_000
    return None


class PyAVEncoder(AudioEncoder):
    """flac / mp3 / opus-in-Ogg / aac-in-ADTS through libav. Streaming output is drained after every push;
    non-streaming writes to a seekable buffer so muxers can fill in lengths (FLAC STREAMINFO, MP3 Xing/LAME
    header with encoder delay) and returns the whole file from `flush()`."""

    def __init__(self, info: FormatInfo, sample_rate: int, streaming: bool, bitrate: int | None) -> None:
        super().__init__(info, sample_rate, streaming)
        spec = _AV_SPECS[info.name]
        self._sink: _Sink | io.BytesIO = _Sink() if streaming else io.BytesIO()
        options = dict(spec.container_options)
        if streaming:
            # libav already flushes its IO buffer after each packet for a non-seekable sink; say so explicitly.
            options["flush_packets"] = "1"
        self._container: av.container.OutputContainer | None = av.open(
            self._sink, mode="w", format=spec.container, options=options
        )
        # Every spec names an audio encoder; PyAV types a stream added by that name as any kind of stream.
        self._stream = cast(av.AudioStream, self._container.add_stream(spec.encoder, rate=sample_rate))
        self._stream.layout = "mono"
        rate = bitrate or default_bitrate(info.name, sample_rate)
        if rate:
            self._stream.bit_rate = rate
        self._time_base = Fraction(1, sample_rate)
        self._pts = 0

    def _encode(self, x: np.ndarray) -> bytes:
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.time_base = self._time_base
        frame.pts = self._pts
        self._pts += len(x)
        self._mux(frame)
        return self._drain(final=False)

    def _finish(self) -> bytes:
        self._mux(None)  # drains the encoder (and PyAV's frame-size FIFO), padding the last frame
        assert self._container is not None  # flush calls _finish once, before _release
        self._container.close()  # writes the trailer
        self._container = None
        return self._drain(final=True)

    def _mux(self, frame: av.AudioFrame | None) -> None:
        assert self._container is not None  # push and flush refuse an encoder already flushed or closed
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _drain(self, final: bool) -> bytes:
        if isinstance(self._sink, _Sink):
            return self._sink.drain()
        return self._sink.getvalue() if final else b""

    def _release(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - abandoning a stream must not raise
                pass
            self._container = None


def create_encoder(
    fmt: str, sample_rate: int, *, streaming: bool = True, bitrate: int | None = None
) -> AudioEncoder:
    """An incremental encoder for `fmt` at `sample_rate`; ValueError for unknown formats or rates."""
    info = check_format_rate(fmt, sample_rate)
    if info.name == "pcm":
        return PcmEncoder(info, sample_rate, streaming)
    if info.name in ("mulaw", "alaw"):
        return G711Encoder(info, sample_rate, streaming)
    if info.name == "wav":
        return WavEncoder(info, sample_rate, streaming)
    return PyAVEncoder(info, sample_rate, streaming, bitrate)
