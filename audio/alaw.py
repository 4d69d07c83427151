"""G.711 A-law companding in numpy (the European telephony 8-bit format, ITU-T G.711 / Sun g711.c bit layout)."""

from __future__ import annotations

import numpy as np

from audio.pcm import float_to_int16, int16_to_float

# Upper edges of the eight segments of a 13-bit magnitude (g711.c's seg_aend).
_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def lin16_to_alaw(pcm: np.ndarray) -> np.ndarray:
    """int16 samples -> A-law code bytes (uint8), bit-identical to Sun's g711.c / CPython's audioop.lin2alaw."""
    v = np.asarray(pcm, dtype=np.int16).astype(np.int32) >> 3  # 13-bit; arithmetic shift floors negatives
    negative = v < 0
    mask = np.where(negative, 0x55, 0xD5)  # the sign bit set for positive values, then even bits inverted
    mag = np.where(negative, -v - 1, v)
    seg = np.searchsorted(_SEGMENT_ENDS, mag, side="left")  # the first segment whose end holds mag; 8: over
    quant = np.where(seg < 2, mag >> 1, mag >> np.maximum(seg, 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | quant)
    return (code ^ mask).astype(np.uint8)


def alaw_to_lin16(codes: np.ndarray) -> np.ndarray:
    """A-law code bytes (uint8) -> int16 samples."""
    a = np.asarray(codes, dtype=np.uint8).astype(np.int32) ^ 0x55
    seg = (a >> 4) & 0x07
    t = ((a & 0x0F) << 4) + np.where(seg == 0, 8, 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


def alaw_encode(samples: np.ndarray) -> bytes:
    """Float32 samples in [-1, 1] -> raw A-law bytes (one byte per sample, no header)."""
    return lin16_to_alaw(float_to_int16(samples)).tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Raw A-law bytes -> float32 samples."""
    return int16_to_float(alaw_to_lin16(np.frombuffer(data, dtype=np.uint8)))
