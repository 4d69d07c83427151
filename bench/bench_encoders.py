"""Streaming encoder and resampler cost on CPU.

For every output format at 16 kHz and 48 kHz (mulaw: 8 kHz only), pushes 40 ms frames of a speech-like
signal through `create_encoder(...)` and reports CPU seconds spent per second of audio (process time, so
other load on the machine does not count), the resulting bit rate, and how much audio had been pushed
when the first bytes came out. A second table does the same for `StreamingResampler`.

Usage: .venv/bin/python bench/bench_encoders.py [--quick]
Prints markdown tables and writes bench/results/encoders.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio.encoders import FORMATS, create_encoder  # noqa: E402
from audio.reframe import frame_samples_for  # noqa: E402
from audio.resample import StreamingResampler  # noqa: E402

FRAME_MS = 40
RESAMPLE_PAIRS = [(16000, 48000), (16000, 24000), (16000, 8000), (48000, 16000), (48000, 44100)]


@dataclass
class EncoderRow:
    format: str
    sample_rate: int
    audio_s: float
    cpu_s_per_audio_s: float
    x_realtime: float
    kbps: float
    first_bytes_after_ms: float  # audio pushed when push() first returned bytes


@dataclass
class ResampleRow:
    in_rate: int
    out_rate: int
    audio_s: float
    cpu_s_per_audio_s: float
    x_realtime: float


def _signal(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A gliding, amplitude-modulated tone plus noise: exercises codecs more than a pure sine would."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    wav = 0.25 * voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return (wav + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _frames(x: np.ndarray, rate: int) -> list[np.ndarray]:
    n = frame_samples_for(rate, FRAME_MS)
    return [x[i : i + n] for i in range(0, len(x), n)]


def bench_encoder(fmt: str, rate: int, seconds: float, rounds: int) -> EncoderRow:
    frames = _frames(_signal(seconds, rate), rate)
    best = float("inf")
    total = 0
    first_ms = float("nan")
    for _ in range(rounds):
        pushed = 0
        first = None
        t0 = time.process_time()
        enc = create_encoder(fmt, rate)
        total = 0
        for frame in frames:
            out = enc.push(frame)
            pushed += len(frame)
            if out and first is None:
                first = pushed
            total += len(out)
        total += len(enc.flush())
        best = min(best, time.process_time() - t0)
        first_ms = 1000.0 * (first or pushed) / rate
    per_s = best / seconds
    return EncoderRow(fmt, rate, seconds, per_s, 1.0 / per_s if per_s else float("inf"),
                      total * 8 / seconds / 1000, first_ms)  # fmt: skip


def bench_resampler(in_rate: int, out_rate: int, seconds: float, rounds: int) -> ResampleRow:
    frames = _frames(_signal(seconds, in_rate), in_rate)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        rs = StreamingResampler(in_rate, out_rate)
        for frame in frames:
            rs.push(frame)
        rs.finish()
        best = min(best, time.process_time() - t0)
    per_s = best / seconds
    return ResampleRow(in_rate, out_rate, seconds, per_s, 1.0 / per_s if per_s else float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="3 s of audio, 2 rounds (default 20 s, 5 rounds)"
    )
    args = parser.parse_args()
    seconds, rounds = (3.0, 2) if args.quick else (20.0, 5)

    enc_rows = []
    for fmt in FORMATS:
        for rate in (8000,) if fmt == "mulaw" else (16000, 48000):
            enc_rows.append(bench_encoder(fmt, rate, seconds, rounds))
    rs_rows = [bench_resampler(i, o, seconds, rounds) for i, o in RESAMPLE_PAIRS]

    print(
        f"\nEncoders: {FRAME_MS} ms pushes, {seconds:g} s of audio, best of {rounds}, CPU time of one thread\n"
    )
    print("| format | rate | CPU s / audio s | x realtime | kbit/s | first bytes after |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in enc_rows:
        print(f"| {r.format} | {r.sample_rate} | {r.cpu_s_per_audio_s:.5f} | {r.x_realtime:,.0f} | "
              f"{r.kbps:.1f} | {r.first_bytes_after_ms:.0f} ms |")  # fmt: skip
    print(
        f"\nStreamingResampler (polyphase; bench/bench_resampler.py sets it beside soxr): {FRAME_MS} ms pushes\n"
    )
    print("| in -> out | CPU s / audio s | x realtime |")
    print("|---|---:|---:|")
    for row in rs_rows:
        print(f"| {row.in_rate} -> {row.out_rate} | {row.cpu_s_per_audio_s:.5f} | {row.x_realtime:,.0f} |")

    results = {
        "meta": {
            "quick": args.quick,
            "frame_ms": FRAME_MS,
            "audio_s": seconds,
            "rounds": rounds,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "av": av.__version__,
            "soxr": soxr.__version__,
            "numpy": np.__version__,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "encoders": [asdict(r) for r in enc_rows],
        "resamplers": [asdict(r) for r in rs_rows],
    }
    out = ROOT / "bench" / "results" / "encoders.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
