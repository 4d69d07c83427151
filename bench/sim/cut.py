"""What cutting a chunk short for a listener about to run dry buys on the goal bursts: `python -m bench sim cut
[--json OUT] [--quick]`.

The service cuts a stream's next decode chunk short once its listener would run dry within
`TTS_STREAM_CUT_RUNWAY_MS` (`DecodePlanner.cut`, core/streaming.py): the tokens that have their full look-ahead are
decoded now instead of waiting for the whole chunk, which the engine, at a burst's peak, makes slower than the chunks
grow. This runs the goal bursts (bench/sim/goals.py) with the cut as served and without it (`cut_runway_s` None),
seeds 0-2, host 1.4 ms per audio second, on a device that runs one call at a time, under:
- admission off, every newcomer on the exact first chunk: what the modelled device carries;
- the service's admission (`served`) and the `settled` and `bursts` profiles (services/device/admission_profiles.py;
  `bursts` is set for the cut and needs it).
The device models are the H200's measured codec at vLLM's published engine step and at the 3 ms step, each with
AP-BWE in fp32 (as served) and in TF32. Prints, per burst and model, streams admitted per seed, first audio p95 range
and the streams that underran at a 100 ms prebuffer; writes every run. A prediction from cost models, not a
measurement; floods and sustained overload are `python -m bench sim overload`.
"""

from __future__ import annotations

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.harness import write_results
from bench.sim.goals import GOAL_BURSTS, MEASURED_HOST_MS, arrivals_named
from bench.sim.run import served_streaming, simulate_arrivals
from bench.standin.cost_model import CostModel

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "bench" / "cost_models"
MODELS = {
    "vLLM step, fp32 AP-BWE": MODELS_DIR / "h200-graphs-vllm-step.json",
    "vLLM step, TF32 AP-BWE": MODELS_DIR / "h200-graphs-vllm-step-sr-tf32.json",
    "3 ms step, fp32 AP-BWE": MODELS_DIR / "h200-graphs.json",
    "3 ms step, TF32 AP-BWE": MODELS_DIR / "h200-graphs-sr-tf32.json",
}
ADMISSIONS = ("off", "served", "settled", "bursts")
CUTS = ("cut", "uncut")
SEEDS = (0, 1, 2)

Job = tuple[str, str, str, str, int]  # model, burst, admission, cut, seed


def run_one(job: Job) -> dict[str, Any]:
    model_name, burst, admission, cut, seed = job
    arrivals = arrivals_named(burst, GOAL_BURSTS)
    model = CostModel.load(MODELS[model_name]).with_overrides(host_ms=MEASURED_HOST_MS)
    streaming = served_streaming()
    if cut == "uncut":
        streaming = replace(streaming, cut_runway_s=None)
    report = simulate_arrivals(model, arrivals, admission, seed, streaming=streaming)
    return {
        "model": model_name,
        "arrivals": burst,
        "admission": admission,
        "cut": cut,
        "cut_runway_s": streaming.cut_runway_s,
        "seed": seed,
        "admitted": report["streams_admitted"],
        "underran": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "cut_windows": report["cut_windows"],
        "mean_decode_batch": report["mean_decode_batch"],
        "refused_by": report["refused_by"],
    }


def summary_cell(runs: list[dict[str, Any]]) -> str:
    """Runs of one cell, seed by seed: "admitted per seed, first audio p95 range, dry per seed"."""
    p95 = [r["ttfa_ms_p95"] for r in runs if r["ttfa_ms_p95"] is not None]
    span = f"{round(min(p95))}-{round(max(p95))}" if p95 else "-"
    admitted = "/".join(str(r["admitted"]) for r in runs)
    underran = "/".join(str(r["underran"]) for r in runs)
    return f"{admitted}, {span}, dry {underran}"


def print_table(runs: list[dict[str, Any]]) -> None:
    print(
        "Admitted per seed, first audio p95 ms, streams that underran at a 100 ms prebuffer per seed; "
        f"host {MEASURED_HOST_MS} ms per audio second, serial device"
    )
    columns = [(a, c) for a in ADMISSIONS for c in CUTS]
    print("| burst | device model | " + " | ".join(f"{a}, {c}" for a, c in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for burst, model in itertools.product([b.name for b in GOAL_BURSTS], MODELS):
        cells = []
        for admission, cut in columns:
            chosen = sorted(
                (
                    r
                    for r in runs
                    if (r["arrivals"], r["model"], r["admission"], r["cut"]) == (burst, model, admission, cut)
                ),
                key=lambda r: r["seed"],
            )
            cells.append(summary_cell(chosen) if chosen else "")
        if any(cells):
            print(f"| {burst} | {model} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "simulate" / "cut.json")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--quick", action="store_true", help="seed 0, vLLM's step with TF32 AP-BWE, the 48 kHz burst"
    )
    args = p.parse_args(argv)
    seeds = SEEDS[:1] if args.quick else SEEDS
    models = ["vLLM step, TF32 AP-BWE"] if args.quick else list(MODELS)
    bursts = [GOAL_BURSTS[2].name] if args.quick else [b.name for b in GOAL_BURSTS]
    jobs: list[Job] = list(itertools.product(models, bursts, ADMISSIONS, CUTS, seeds))
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs))
    print_table(runs)
    write_results(args.json, {"host_ms_per_audio_second": MEASURED_HOST_MS, "runs": runs})
    return 0
