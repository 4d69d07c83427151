"""48 kHz at the AP-BWE precision served, in one run: `python -m bench sim sr_precision [--json OUT]`.

The spec's H100 model (`h100-tf32.json`) prices AP-BWE at the TF32 slope and exact-length calls as graphs; the service
captures AP-BWE in fp32 and runs a stream's true end eager unless it is shaped to a bucket's length
(`h100-decode-tf32-sr-fp32.json`: the fp32 slope and eager figures). This offers 200 streams at 48 kHz within 10 s
(host 1.5 ms per audio second, admission on) at each LLM slope and seed under three cases: the spec's model, the
served model with true ends at their exact length (`SimConfig.shape_true_ends=False`),
and the served model as the service runs now. Prints streams held (mean and range over the seeds), underrunning
streams and p95 first audio per case, and writes every run (docs/benchmarks.md, "48 kHz at the AP-BWE precision served").
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.sim.run import SimConfig, simulate
from bench.standin.cost_model import CostModel

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "bench" / "cost_models"
CASES = {  # name: (cost model file, true ends shaped)
    "spec's model": ("h100-tf32.json", True),
    "served, true ends eager": ("h100-decode-tf32-sr-fp32.json", False),
    "served, true ends shaped": ("h100-decode-tf32-sr-fp32.json", True),
}
PER_ROW = (0.056, 0.03, 0.02, 0.01, 0.005)
SEEDS = (0, 1, 2)


def run_one(job: tuple[str, float, int]) -> dict[str, Any]:
    case, per_row, seed = job
    file, shaped = CASES[case]
    model = CostModel.load(MODELS / file).with_overrides(llm_per_row=per_row, host_ms=1.5)
    report = simulate(SimConfig(model, 200, sample_rate=48_000, seed=seed, shape_true_ends=shaped))
    return {
        "case": case,
        "per_row": per_row,
        "seed": seed,
        "admitted": report["streams_admitted"],
        "underrunning": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "sr_device_s": report["gpu_busy_seconds"]["sr"],
        "eager_codec_calls": report["eager_codec_calls"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "simulate" / "sr-precision.json")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    jobs = [(case, per_row, seed) for case in CASES for per_row in PER_ROW for seed in SEEDS]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_one, jobs))
    print(
        "| llm ms/row | " + " | ".join(f"held: {case}" for case in CASES) + " | underrunning | p95 ms (now) |"
    )
    print("|---|" + "---|" * (len(CASES) + 2))
    for per_row in PER_ROW:
        cells, under, p95 = [], 0, []
        for case in CASES:
            runs = [r for r in rows if r["case"] == case and r["per_row"] == per_row]
            held = [r["admitted"] for r in runs]
            cells.append(f"{sum(held) / len(held):.0f} ({min(held)}-{max(held)})")
            under += sum(r["underrunning"] for r in runs)
            p95 = [r["ttfa_ms_p95"] for r in runs]  # the last case's: the service as it runs now
        print(f"| {per_row} | " + " | ".join(cells) + f" | {under} | {min(p95):.0f}-{max(p95):.0f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "cases": {k: {"cost_model": f, "true_ends_shaped": s} for k, (f, s) in CASES.items()},
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.json}")
    return 0
