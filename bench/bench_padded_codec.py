"""The codec as batched, padded calls against one call per row (what the scheduler's `ModelRunner` replaces).

For B windows of mixed lengths (uniform in [length/2, length] tokens), the cost of:
- `per row`: one `decode_with_speaker` per window at its exact length (the service before the scheduler);
- `padded batch`: one `decode_padded` call, rows right-padded to `length` (the bucket), masks on;
- `runner`: the same through `ModelRunner.run_sync` (packing, copy out, slicing the kept samples).
And for AP-BWE: B windows of S samples, one `enhance_window` each against one `enhance_batch`.
Times are the best of N runs of the whole set (on a shared CPU the minimum is the least disturbed estimate); the
ratio is per row / padded batch. Also the largest difference of a padded row from the row alone (the tolerance the
tests hold). Demo-size models by default (a CPU); `--released` for the released sizes (slow on a CPU).

Usage: .venv/bin/python bench/bench_padded_codec.py [--batches 1,4,8] [--length 48] [--reps 3] [--released]
Prints a markdown table and writes bench/results/padded_codec.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu.bench_gpu import apbwe_config, bicodec_config, build_bicodec, build_sr  # noqa: E402
from core.apbwe import RELEASED_CONFIG as APBWE_RELEASED  # noqa: E402
from core.demo.random_bicodec import DEMO_CONFIG  # noqa: E402
from services.codec.calls import Call  # noqa: E402
from services.codec.runner import ModelRunner  # noqa: E402
from services.codec.windows import DecodeWindow, SRWindow  # noqa: E402


def best_ms(fn: Callable[[], object], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best * 1000


def decode_rows(decoder, batch: int, length: int, reps: int, rng: np.random.Generator) -> dict:  # noqa: ANN001
    lengths = rng.integers(max(1, length // 2), length + 1, batch)
    ids = np.zeros((batch, length), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(0, 8192, n)
    d = torch.randn(batch, decoder.d_vector_dim, generator=torch.Generator().manual_seed(batch))
    rows = [torch.from_numpy(ids[i : i + 1, :n]) for i, n in enumerate(lengths)]
    windows = tuple(DecodeWindow(ids[i, :n].astype(np.int32), d[i], 0, int(n)) for i, n in enumerate(lengths))
    runner = ModelRunner(decoder)
    with torch.inference_mode():
        per_row = best_ms(lambda: [decoder.decode_with_speaker(r, d[i : i + 1]) for i, r in enumerate(rows)], reps)
        padded = best_ms(lambda: decoder.decode_padded(ids, lengths, d), reps)
        via_runner = best_ms(lambda: runner.run_sync(Call("decode", windows, length, batch)), reps)
        out = decoder.decode_padded(ids, lengths, d)
        err = max(float((out[i, : n * decoder.hop_length] - decoder.decode_with_speaker(rows[i], d[i : i + 1])[0])
                        .abs().max()) for i, n in enumerate(lengths))
    runner.close()
    valid = int(lengths.sum())
    return {"stage": "BiCodec decode", "batch": batch, "bucket": length, "valid_share": round(valid / (batch * length), 2),
            "per_row_ms": round(per_row, 2), "padded_ms": round(padded, 2), "runner_ms": round(via_runner, 2),
            "ratio": round(per_row / padded, 2), "max_abs_err": err}


def sr_rows(decoder, sr, batch: int, samples: int, reps: int, rng: np.random.Generator) -> dict:  # noqa: ANN001
    x = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
    windows = tuple(SRWindow(x[i], 0, 3 * (samples - sr.context)) for i in range(batch))
    runner = ModelRunner(decoder, sr)
    per_row = best_ms(lambda: [sr.enhance_window(row) for row in x], reps)
    padded = best_ms(lambda: sr.enhance_batch(x), reps)
    via_runner = best_ms(lambda: runner.run_sync(Call("sr", windows, samples, batch)), reps)
    keep = 3 * (samples - sr.context)
    y = sr.enhance_batch(x)
    err = max(float(np.abs(y[i, :keep].numpy() - sr.enhance_window(x[i])[:keep]).max()) for i in range(batch))
    runner.close()
    return {"stage": "AP-BWE", "batch": batch, "bucket": samples, "valid_share": 1.0, "per_row_ms": round(per_row, 2),
            "padded_ms": round(padded, 2), "runner_ms": round(via_runner, 2), "ratio": round(per_row / padded, 2),
            "max_abs_err": err}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--length", type=int, default=48, help="decode bucket, tokens")
    parser.add_argument("--sr-samples", type=int, default=3_520, help="AP-BWE bucket, 16 kHz samples")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--released", action="store_true", help="released sizes (slow on a CPU)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "padded_codec.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    decoder = build_bicodec(bicodec_config()[0] if args.released else DEMO_CONFIG, "cpu")
    sr = build_sr(apbwe_config()[0] if args.released else dict(APBWE_RELEASED, ConvNeXt_channels=32,
                                                                 ConvNeXt_layers=2), "cpu")
    rng = np.random.default_rng(0)
    batches = [int(b) for b in args.batches.split(",")]
    rows = [decode_rows(decoder, b, args.length, args.reps, rng) for b in batches]
    rows += [sr_rows(decoder, sr, b, args.sr_samples, args.reps, rng) for b in batches]
    size = "released" if args.released else "demo"
    print(f"\n{size} size, CPU ({platform.machine()}), {args.threads} thread(s), best of {args.reps}\n")
    print("| stage | batch | bucket | valid share | per row ms | padded batch ms | runner ms | per row / batch | "
          "max abs err |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['stage']} | {r['batch']} | {r['bucket']} | {r['valid_share']:.2f} | {r['per_row_ms']:.1f} | "
              f"{r['padded_ms']:.1f} | {r['runner_ms']:.1f} | {r['ratio']:.2f} | {r['max_abs_err']:.1e} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"size": size, "machine": platform.processor() or platform.machine(),
                                    "threads": args.threads, "reps": args.reps, "rows": rows}, indent=1) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
