"""Hostile reference audio cannot make the decoder allocate: hand-built FLAC files whose frames declare their own
sample rate, channel count and block size, and WAV headers that lie, are each refused or decoded within a bounded
amount of memory (a 135-byte FLAC whose last frame said 16 Hz took a server from 0.6 to 4.1 GB)."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from core.clone.reference_audio import ReferenceAudioError, decode_reference_audio
from services.errors import ERROR_CODES

# A legitimate 30 s reference at the highest accepted rate peaks near 150 MB in float64 (decode + one-shot
# resample); every hostile file below must stay well under that.
PEAK_BOUND_BYTES = 64 * 2**20


def crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def utf8_number(n: int) -> bytes:
    return chr(n).encode("utf-8") if n < 0x10000 else struct.pack(">I", n)  # frame numbers here stay small


def flac_frame(number: int, *, rate_hz: int, block: int, channels: int, value: int = 8000) -> bytes:
    """One fixed-blocksize FLAC frame of CONSTANT subframes (16-bit), its rate and size written in the header."""
    header = bytes([0xFF, 0xF8, (0b0111 << 4) | 0b1101, ((channels - 1) << 4) | (0b100 << 1)])
    header += utf8_number(number) + struct.pack(">H", block - 1) + struct.pack(">H", rate_hz)
    header += bytes([crc8(header)])
    body = b"".join(b"\x00" + struct.pack(">h", value) for _ in range(channels))
    frame = header + body
    return frame + struct.pack(">H", crc16(frame))


def flac(frames: list[bytes], *, rate: int, channels: int, total_samples: int, block: int = 4096) -> bytes:
    """fLaC + STREAMINFO (what the container declares) + the given frames (what each frame declares)."""
    info = struct.pack(">HH", block, block) + b"\x00\x00\x00\x00\x00\x00"
    packed = (rate << 44) | ((channels - 1) << 41) | (15 << 36) | (total_samples & (2**36 - 1))
    info += packed.to_bytes(8, "big") + b"\x00" * 16
    return b"fLaC" + bytes([0x80, 0, 0, len(info)]) + info + b"".join(frames)


def wav(rate: int, channels: int, payload: bytes, *, declared_data: int | None = None) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    size = len(payload) if declared_data is None else declared_data
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + payload
    return b"RIFF" + struct.pack("<I", min(len(body), 2**32 - 1)) + body


def peak_while_decoding(data: bytes) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        decode_reference_audio(data)
        outcome = None
    except ReferenceAudioError as exc:
        assert exc.code in ERROR_CODES
        outcome = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, outcome


def test_the_reported_file_a_last_frame_at_16_hz_is_refused_without_allocating():
    frames = [flac_frame(i, rate_hz=48000, block=4096, channels=1) for i in range(3)]
    frames.append(flac_frame(3, rate_hz=16, block=4096, channels=1))
    data = flac(frames, rate=48000, channels=1, total_samples=4 * 4096)
    assert len(data) < 200
    peak, outcome = peak_while_decoding(data)
    assert isinstance(outcome, ReferenceAudioError) and outcome.code == "INVALID_AUDIO"
    assert "sample rate" in outcome.message
    assert peak < PEAK_BOUND_BYTES


@pytest.mark.parametrize("rate_hz", [1, 16, 3999])
def test_a_stream_at_a_rate_that_carries_no_speech_is_refused(rate_hz):
    frames = [flac_frame(i, rate_hz=rate_hz, block=16, channels=1) for i in range(2)]
    peak, outcome = peak_while_decoding(flac(frames, rate=rate_hz, channels=1, total_samples=32))
    assert isinstance(outcome, ReferenceAudioError) and outcome.code == "INVALID_AUDIO"
    assert peak < PEAK_BOUND_BYTES


def test_per_frame_rate_drops_are_refused():
    rates = [48000, 24000, 12000, 6000, 4000]
    frames = [flac_frame(i, rate_hz=r, block=4096, channels=1) for i, r in enumerate(rates)]
    peak, outcome = peak_while_decoding(flac(frames, rate=48000, channels=1, total_samples=5 * 4096))
    assert isinstance(outcome, ReferenceAudioError) and outcome.code == "INVALID_AUDIO"
    assert peak < PEAK_BOUND_BYTES


def test_huge_declared_sample_counts_cost_no_more_than_the_duration_limit():
    # STREAMINFO declares 2^36-1 samples; each 4000 Hz frame of 65535 samples is 16 s: the third passes 30 s.
    frames = [flac_frame(i, rate_hz=4000, block=65535, channels=1) for i in range(500)]
    peak, outcome = peak_while_decoding(
        flac(frames, rate=4000, channels=1, total_samples=2**36 - 1, block=65535)
    )
    assert isinstance(outcome, ReferenceAudioError) and outcome.code == "AUDIO_TOO_LONG"
    assert peak < PEAK_BOUND_BYTES
    # A WAV whose data chunk claims 4 GiB but holds 2 s decodes what is there.
    payload = struct.pack("<h", 8000) * 32000
    peak, outcome = peak_while_decoding(wav(16000, 1, payload, declared_data=2**32 - 1))
    assert outcome is None and peak < PEAK_BOUND_BYTES


def test_more_channels_than_declared_stay_bounded():
    frames = [flac_frame(i, rate_hz=48000, block=65535, channels=8) for i in range(40)]
    peak, outcome = peak_while_decoding(flac(frames, rate=48000, channels=1, total_samples=4096))
    # Either refused or decoded as channel 0 within the duration limit; never an unbounded allocation.
    assert outcome is None or outcome.code in ("INVALID_AUDIO", "AUDIO_TOO_LONG")
    assert peak < PEAK_BOUND_BYTES


def test_an_honest_hand_made_flac_decodes():
    frames = [flac_frame(i, rate_hz=16000, block=4096, channels=1) for i in range(8)]
    result = decode_reference_audio(flac(frames, rate=16000, channels=1, total_samples=8 * 4096))
    assert result.samples.size == 8 * 4096 and result.source_sample_rate == 16000
