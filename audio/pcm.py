"""Float32 <-> 16-bit PCM conversion.

Signals in this package are mono float32 arrays in [-1, 1]. Anything leaving the service as linear PCM
is signed 16-bit little-endian (s16le).
"""

from __future__ import annotations

import numpy as np

PCM16_SCALE = 32767.0


def as_mono_float32(samples: np.ndarray) -> np.ndarray:
    """Return `samples` as a contiguous 1-D float32 array (no copy when it already is one)."""
    if (
        type(samples) is np.ndarray
        and samples.dtype == np.float32
        and samples.ndim == 1
        and samples.flags.c_contiguous
    ):
        return samples  # the usual case on the serving path, per frame: skip the generic checks
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"expected mono audio as a 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Scale by 32767, round to nearest, clip to the int16 range (out-of-range input saturates)."""
    x = as_mono_float32(samples)
    scaled = x * np.float32(PCM16_SCALE)  # a fresh array: rounded and clipped in place (ufuncs, not np.clip's
    np.rint(scaled, out=scaled)  # Python-level wrapper, which cost more than the arithmetic on 40 ms frames)
    np.minimum(scaled, np.float32(32767), out=scaled)
    np.maximum(scaled, np.float32(-32768), out=scaled)
    return scaled.astype(np.int16)


def unit_float_to_s16le(samples: np.ndarray) -> bytes:
    """The s16le bytes of `samples` clipped to [-1, 1]: `float_to_s16le(clip(samples, -1, 1))` in two passes fewer
    (no clipped copy: clipping after the scale to +-32767 is the same, as float32 scaling is monotonic and exact at
    +-1; NaN stays NaN either way), for the sample-wise encoders on every streamed chunk (48 kHz: 3x the samples).
    Four passes over the chunk: 37 -> 18 us for a 32,000-sample chunk against six (clip and round separately)."""
    x = as_mono_float32(samples)
    with np.errstate(over="ignore"):  # a huge sample scales to inf, which the clip below takes to 32767
        scaled = x * np.float32(PCM16_SCALE)
    np.clip(scaled, np.float32(-PCM16_SCALE), np.float32(PCM16_SCALE), out=scaled)  # one pass for both bounds
    pcm = np.empty(scaled.shape, "<i2")
    np.rint(
        scaled, out=pcm, casting="unsafe"
    )  # rounded and cast in one pass (exact: the values are whole now)
    return pcm.tobytes()


def int16_to_float(pcm: np.ndarray) -> np.ndarray:
    """Inverse of `float_to_int16` (exact for every value it produces); -32768 maps to -1."""
    arr = np.asarray(pcm, dtype=np.int16)
    samples: np.ndarray = np.maximum(arr.astype(np.float32) / np.float32(PCM16_SCALE), np.float32(-1.0))
    return samples


def float_to_s16le(samples: np.ndarray) -> bytes:
    """Float32 samples -> raw s16le bytes."""
    return float_to_int16(samples).astype("<i2", copy=False).tobytes()  # no copy on little-endian hosts


def s16le_to_float(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Raw s16le bytes -> float32 samples. A trailing odd byte is an error, not silently dropped."""
    if len(data) % 2:
        raise ValueError(f"s16le data must have an even number of bytes, got {len(data)}")
    return int16_to_float(np.frombuffer(data, dtype="<i2"))
