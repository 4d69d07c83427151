"""G.711 mu-law companding in numpy (the telephony 8-bit format, ITU-T G.711 / Sun g711.c bit layout)."""

from __future__ import annotations

import numpy as np

from audio.pcm import float_to_int16, int16_to_float

_BIAS = 0x84  # 132: makes every segment's lower edge a power of two (decoder side, 16-bit scale)
_BIAS14 = _BIAS >> 2  # the encoder works on 14-bit magnitudes, as the G.711 reference code does
_CLIP14 = 8159


def lin16_to_mulaw(pcm: np.ndarray) -> np.ndarray:
    """int16 samples -> mu-law code bytes (uint8), bit-identical to Sun's g711.c / CPython's audioop.

    (ffmpeg's pcm_mulaw picks the nearest level instead and differs by one code at some boundaries.)"""
    v = np.asarray(pcm, dtype=np.int16).astype(np.int32) >> 2  # arithmetic shift: floors negatives
    mask = np.where(v < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(v), _CLIP14) + _BIAS14  # in [33, 8192]
    # Segment = highest set bit minus 5 (mag 33..63 is segment 0); frexp is exact on integers.
    seg = np.maximum(np.frexp(mag)[1] - 6, 0).astype(np.int32)
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def mulaw_to_lin16(codes: np.ndarray) -> np.ndarray:
    """mu-law code bytes (uint8) -> int16 samples."""
    u = ~np.asarray(codes, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def mulaw_encode(samples: np.ndarray) -> bytes:
    """Float32 samples in [-1, 1] -> raw mu-law bytes (one byte per sample, no header)."""
    return lin16_to_mulaw(float_to_int16(samples)).tobytes()


def mulaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Raw mu-law bytes -> float32 samples."""
    return int16_to_float(mulaw_to_lin16(np.frombuffer(data, dtype=np.uint8)))
