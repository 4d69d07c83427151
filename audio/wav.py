"""RIFF/WAVE headers: the 44-byte canonical form, streaming (unknown length) or exact."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

WAV_HEADER_BYTES = 44
# Unknown-length marker used by OpenAI, ffmpeg (pipe output) and others; readers then read to EOF.
STREAMING_SIZE = 0xFFFFFFFF

WavFormat = Literal["pcm", "mulaw"]
_FORMAT_TAGS: dict[WavFormat, int] = {"pcm": 1, "mulaw": 7}
_DEFAULT_BITS = {"pcm": 16, "mulaw": 8}
# RIFF id, size, WAVE, fmt chunk (16 bytes: tag, channels, rate, byte rate, block align, bits), data id, size.
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


@dataclass(frozen=True)
class WavInfo:
    """What a 44-byte canonical header says."""

    format_tag: int
    num_channels: int
    sample_rate: int
    bits_per_sample: int
    riff_size: int
    data_size: int

    @property
    def streaming(self) -> bool:
        return self.data_size == STREAMING_SIZE


def wav_header(
    sample_rate: int,
    num_channels: int = 1,
    bits_per_sample: int | None = None,
    data_bytes: int | None = None,
    fmt: WavFormat = "pcm",
) -> bytes:
    """Build a 44-byte header. `data_bytes=None` marks a stream: RIFF and data sizes are 0xFFFFFFFF.

    `fmt="mulaw"` writes format tag 7 with 8-bit samples; `bits_per_sample` defaults per format (16 / 8).
    """
    if fmt not in _FORMAT_TAGS:
        raise ValueError(f"unknown WAV format {fmt!r}; accepted: {', '.join(_FORMAT_TAGS)}")
    bits = _DEFAULT_BITS[fmt] if bits_per_sample is None else bits_per_sample
    if fmt == "mulaw" and bits != 8:
        raise ValueError("mu-law WAV has 8 bits per sample")
    if bits not in (8, 16, 24, 32):
        raise ValueError(f"bits_per_sample must be 8, 16, 24 or 32, got {bits}")
    if sample_rate <= 0 or num_channels <= 0:
        raise ValueError("sample_rate and num_channels must be positive")
    if data_bytes is None:
        riff_size = data_size = STREAMING_SIZE
    else:
        if data_bytes < 0:
            raise ValueError("data_bytes must be >= 0")
        pad = data_bytes & 1  # RIFF chunks are word aligned; an odd data chunk is followed by one pad byte
        riff_size = 36 + data_bytes + pad
        if riff_size > 0xFFFFFFFE:
            raise ValueError("data too large for a RIFF file (4 GiB limit)")
        data_size = data_bytes
    block_align = num_channels * bits // 8
    byte_rate = sample_rate * block_align
    tag = _FORMAT_TAGS[fmt]
    return _HEADER.pack(
        b"RIFF", riff_size, b"WAVE", b"fmt ", 16, tag, num_channels, sample_rate, byte_rate, block_align, bits,
        b"data", data_size,
    )  # fmt: skip


def complete_wav(pcm_bytes: bytes, sample_rate: int, num_channels: int = 1, fmt: WavFormat = "pcm") -> bytes:
    """A whole WAV file with exact sizes (non-streaming responses). Odd-length data gets its pad byte."""
    body = bytes(pcm_bytes)
    header = wav_header(sample_rate, num_channels, None, len(body), fmt)
    return header + body + (b"\x00" if len(body) & 1 else b"")


def read_wav_header(data: bytes) -> WavInfo:
    """Parse a canonical 44-byte header (the form this module writes)."""
    if (
        len(data) < WAV_HEADER_BYTES
        or data[:4] != b"RIFF"
        or data[8:16] != b"WAVEfmt "
        or data[36:40] != b"data"
    ):
        raise ValueError("not a canonical 44-byte WAV header")
    _, riff_size, _, _, _, tag, channels, rate, _, _, bits, _, data_size = _HEADER.unpack_from(data)
    return WavInfo(tag, channels, rate, bits, riff_size, data_size)


def patch_wav_sizes(wav: bytes) -> bytes:
    """Rewrite a streamed WAV's 0xFFFFFFFF sizes with the real ones (e.g. after saving a stream to disk)."""
    info = read_wav_header(wav)
    tags = {tag: name for name, tag in _FORMAT_TAGS.items()}
    if info.format_tag not in tags:
        raise ValueError(f"unsupported WAV format tag {info.format_tag}")
    body = bytes(wav[WAV_HEADER_BYTES:])
    header = wav_header(
        info.sample_rate, info.num_channels, info.bits_per_sample, len(body), tags[info.format_tag]
    )
    return header + body + (b"\x00" if len(body) & 1 else b"")
