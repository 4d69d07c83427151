"""AP-BWE 16->48 kHz speed on CPU at the released size (29.8 M parameters, random weights: same compute).

Measures
- offline `upsample` real-time factor (compute seconds per second of audio) for 1 s and 5 s inputs;
- streaming cost relative to offline for push schedules like the streaming BiCodec decoder's
  (8000 samples, then doubling to 64000 with the default settings), and fixed push sizes.
Times are the best of N runs: on a shared CPU the minimum is the least disturbed estimate.

Usage: .venv/bin/python bench/bench_apbwe.py [--quick] [--threads N]
Prints a markdown table and writes bench/results/apbwe.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.apbwe import RELEASED_CONFIG, APBWEConfig, SRStream, SuperResolution, random_generator  # noqa: E402

RATE = 16000


@dataclass
class OfflineRow:
    seconds: float
    best_s: float
    rtf: float
    x_realtime: float


@dataclass
class StreamRow:
    schedule: str
    pushes: int
    model_calls: int
    processed_ratio: float  # model input samples (context included) / signal samples
    stream_s: float
    offline_s: float
    compute_ratio: float  # stream wall time / offline wall time, same signal
    first_audio_ms: float  # compute time of the push that first returned audio


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like level and spectrum are irrelevant to compute; a modulated tone plus noise will do."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (wav + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _bicodec_schedule(total: int, first: int = 8000, growth: float = 2.0, largest: int = 64000) -> list[int]:
    """Push sizes of the chunked BiCodec decoder with default settings (25 tokens x 320, x2, max 200)."""
    sizes: list[int] = []
    size = first
    while sum(sizes) < total:
        sizes.append(min(size, total - sum(sizes)))
        size = min(int(size * growth), largest)
    return sizes


def _fixed_schedule(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


def _time_offline(sr: SuperResolution, wav: np.ndarray, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sr.upsample(wav)
        times.append(time.perf_counter() - t0)
    return min(times)


def _stream_once(sr: SuperResolution, wav: np.ndarray, sizes: list[int]) -> tuple[float, float, SRStream]:
    stream = sr.stream()
    first_audio, total, i = None, 0.0, 0
    for size in sizes:
        t0 = time.perf_counter()
        out = stream.push(wav[i : i + size])
        dt = time.perf_counter() - t0
        total += dt
        if first_audio is None and out.size:
            first_audio = dt
        i += size
    t0 = time.perf_counter()
    out = stream.finish()
    dt = time.perf_counter() - t0
    total += dt
    if first_audio is None:
        first_audio = dt
    return total, first_audio, stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions, a 5 s stream (~1 min on 2 idle cores)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "apbwe.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load_at_start = os.getloadavg()[0]  # the figures mean little if other jobs share the CPU
    config = APBWEConfig.from_dict(RELEASED_CONFIG)
    sr = SuperResolution(random_generator(config, seed=0), config, device="cpu")
    reps = 2 if args.quick else 5
    stream_seconds = 5.0 if args.quick else 15.0
    sr.upsample(_signal(0.5))  # warm-up: allocator, kernel selection

    offline_rows = []
    for seconds in (1.0, 5.0):
        best = _time_offline(sr, _signal(seconds), reps)
        offline_rows.append(OfflineRow(seconds, best, best / seconds, seconds / best))

    wav = _signal(stream_seconds, seed=1)
    schedules = {
        "bicodec 8000,16000,32000,64000..": _bicodec_schedule(wav.size),
        "fixed 16000 (1 s)": _fixed_schedule(wav.size, 16000),
        "fixed 8000 (500 ms)": _fixed_schedule(wav.size, 8000),
        "fixed 3200 (200 ms)": _fixed_schedule(wav.size, 3200),
    }
    stream_rows = []
    for name, sizes in schedules.items():
        # Stream and offline runs alternate so both see the same machine conditions.
        stream_runs, offline_runs = [], []
        for _ in range(2 if args.quick else 3):
            stream_runs.append(_stream_once(sr, wav, sizes))
            offline_runs.append(_time_offline(sr, wav, 1))
        total, first, stream = min(stream_runs, key=lambda run: run[0])
        offline_s = min(offline_runs)
        stream_rows.append(
            StreamRow(
                schedule=name,
                pushes=len(sizes),
                model_calls=stream.model_calls,
                processed_ratio=stream.samples_processed / wav.size,
                stream_s=total,
                offline_s=offline_s,
                compute_ratio=total / offline_s,
                first_audio_ms=first * 1000,
            )
        )

    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "params": sr.num_parameters,
        "context_samples_16k": sr.context,
        "quick": args.quick,
        "load_avg_1m_at_start": load_at_start,
    }
    print(f"AP-BWE 16->48 kHz, released size ({sr.num_parameters:,} params, random weights), CPU, "
          f"{env['threads']} threads, torch {env['torch']}, load avg at start {load_at_start:.1f}\n")  # fmt: skip
    print("| input | upsample time (best of N) | RTF | x real-time |")
    print("|---|---|---|---|")
    for r in offline_rows:
        print(f"| {r.seconds:.0f} s | {r.best_s * 1000:.0f} ms | {r.rtf:.3f} | {r.x_realtime:.1f} |")
    print(f"\nStreaming vs offline on a {stream_seconds:.0f} s signal (context {sr.context} samples = "
          f"{sr.context / 16:.0f} ms each side, min_block 1600):\n")  # fmt: skip
    print("| push schedule | pushes | model calls | samples processed / signal | stream time | "
          "offline time | compute ratio | first-audio push compute |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for row in stream_rows:
        print(f"| {row.schedule} | {row.pushes} | {row.model_calls} | {row.processed_ratio:.2f} | "
              f"{row.stream_s:.2f} s | {row.offline_s:.2f} s | {row.compute_ratio:.2f} | "
              f"{row.first_audio_ms:.0f} ms |")  # fmt: skip

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "env": env,
        "offline": [asdict(r) for r in offline_rows],
        "streaming": {"signal_seconds": stream_seconds, "rows": [asdict(r) for r in stream_rows]},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
