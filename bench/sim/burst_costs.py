"""Which device cost a burst hinges on: `python -m bench sim burst_costs [--json OUT] [--quick]`.

The goal bursts (bench/sim/goals.py) on the H200's measured codec with AP-BWE in TF32 at vLLM's published engine
step (`bench/cost_models/h200-graphs-vllm-step-sr-tf32.json`, or `--cost-model`), then with one cost term made cheaper
at a time (`CostModel.scaled`): the engine step's fixed cost or its cost per row halved, BiCodec decode at 0.75,
AP-BWE at 0.5, and the whole engine step cheaper: both its parts halved, and 0.3 of its fixed cost with 0.25 of its
cost per row (about 0.5 ms + 0.005 ms per row, the order of what reading a 0.5B network's bf16 weights and each row's
few hundred cached tokens takes on an H200); and, for the other side, AP-BWE in fp32 as served
(`h200-graphs-vllm-step.json`, whatever `--cost-model` says); `--engine-step` puts a GPU's measured engine step
(bench/gpu/engine_step.py) under every variant in place of the model's. Each runs with every stream admitted on the
exact first chunk (admission off: what the modelled device carries) and with the `bursts` admission profile, seeds
0-2, host 1.4 ms per audio second, on a device that runs one call at a time (or, `--device-sharing sliced`, the engine
and the codec at half speed each while both have work, as a GPU shares itself between two processes' CUDA contexts,
vLLM's engine core being one), with the cut as served (`TTS_STREAM_CUT_RUNWAY_MS`). `--admission` sets `Admission`
keywords over the profile's (what loosening it for the burst would admit).

It answers what the 48 kHz burst's goal (all 200 admitted, first audio p95 <= 800 ms, none dry) waits on: at the
measured costs the device alone is at its edge (a newcomer near the burst's end waits for its first 49 ids from an
engine that gives each stream little more than real time, the device being busy), so the term that frees device
time is the one to measure and cut first; and where the device carries the burst, what admission then leaves out.
Each run also records what binds while the burst onboards: the device's seconds by term and admission's measures
against what the device then did, and what the admitted streams need of the device at the most of them playing at
once: the engine at real time and the codec at the run's own seconds per audio second (bench/sim/breakdown.py); the
second table gives that need with every stream admitted. A prediction from cost models, not a measurement.
"""

from __future__ import annotations

import argparse
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.harness import repo_path, write_results
from bench.sim.breakdown import NEED_COLUMNS, need_cells
from bench.sim.cut import summary_cell
from bench.sim.goals import GOAL_BURSTS, MEASURED_HOST_MS, arrivals_named
from bench.sim.options import add_device_options, add_engine_step_option, engine_pace, engine_step
from bench.sim.run import simulate_arrivals
from bench.sim.sliced_device import DeviceSharing
from bench.standin.cost_model import CostModel, Linear
from core.llm.engine_pace import EnginePace

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "bench" / "cost_models"
MEASURED = MODELS_DIR / "h200-graphs-vllm-step-sr-tf32.json"
# Each variant: its name, its own cost model file (None: the one measured, `--cost-model`) and `CostModel.scaled`'s
# factors over it.
VARIANTS: dict[str, tuple[Path | None, dict[str, float]]] = {
    "as measured (TF32 AP-BWE)": (None, {}),
    "engine step fixed x0.5": (None, {"llm_fixed": 0.5}),
    "engine per row x0.5": (None, {"llm_per_row": 0.5}),
    "decode x0.75": (None, {"decode": 0.75}),
    "AP-BWE x0.5": (None, {"sr": 0.5}),
    "engine x0.5 (fixed and per row)": (None, {"llm_fixed": 0.5, "llm_per_row": 0.5}),
    "engine fixed x0.3, per row x0.25": (None, {"llm_fixed": 0.3, "llm_per_row": 0.25}),
    "fp32 AP-BWE (as served)": (MODELS_DIR / "h200-graphs-vllm-step.json", {}),
}
ADMISSIONS = ("off", "bursts")
SEEDS = (0, 1, 2)

# the measured cost model's path, variant, burst, admission, seed, JSON settings over the profile's, device sharing,
# the engine's pace (None: it steps every request), a measured engine step in place of the model's and its source
Job = tuple[str, str, str, str, int, str, DeviceSharing, EnginePace | None, tuple[Linear, str] | None]


def run_one(job: Job) -> dict[str, Any]:
    measured, variant, burst, admission, seed, overrides, sharing, pace, step = job
    path, factors = VARIANTS[variant]
    model = CostModel.load(path or measured)
    if step is not None:
        model = model.with_engine_step(*step)
    model = model.scaled(**factors).with_overrides(host_ms=MEASURED_HOST_MS)
    arrivals = arrivals_named(burst, GOAL_BURSTS)
    report = simulate_arrivals(
        model,
        arrivals,
        admission,
        seed,
        admission_over=json.loads(overrides),
        device_sharing=sharing,
        engine_pace=pace,
    )
    onboarding = report["breakdown"]["onboarding"]
    idle = next(t["device_s"] for t in onboarding["terms"] if t["term"] == "device idle")
    return {
        "variant": variant,
        "cost_model": model.name,
        "arrivals": burst,
        "admission": admission,
        "seed": seed,
        "admitted": report["streams_admitted"],
        "underran": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        # of first audio, the part until the first window's ids were usable (the engine's, not the codec's)
        "first_window_ms_p95": report["first_window_ms_p95"],
        "cut_windows": report["cut_windows"],
        "refused_by": report["refused_by"],
        # From the first arrival to the last admitted stream's first audio (bench/sim/breakdown.py)
        "onboarding_s": round(onboarding["to_s"] - onboarding["from_s"], 3),
        "onboarding_device_idle_s": max(0.0, idle),
        "onboarding_device_s": {
            t["term"]: t["device_s"] for t in onboarding["terms"] if t["term"] != "device idle"
        },
        # admission's codec cost and LLM pace as it read them, against what the codec and the engine then did
        "onboarding_admission": onboarding["admission"],
        # device seconds a second the admitted streams need at the most of them playing at once (breakdown.py)
        "playing_need": report["breakdown"]["playing_need"],
    }


def print_table(runs: list[dict[str, Any]], sharing: DeviceSharing) -> None:
    print(
        "Admitted per seed, first audio p95 ms, streams that underran at a 100 ms prebuffer per seed; "
        f"host {MEASURED_HOST_MS} ms per audio second, {sharing} device, vLLM's step"
    )
    print("| burst | device costs | " + " | ".join(f"admission {a}" for a in ADMISSIONS) + " |")
    print("|---|---|" + "---|" * len(ADMISSIONS))
    for burst, variant in itertools.product([b.name for b in GOAL_BURSTS], VARIANTS):
        cells = [
            summary_cell(
                sorted(
                    (
                        r
                        for r in runs
                        if (r["arrivals"], r["variant"], r["admission"]) == (burst, variant, admission)
                    ),
                    key=lambda r: r["seed"],
                )
            )
            for admission in ADMISSIONS
        ]
        if any(r["arrivals"] == burst and r["variant"] == variant for r in runs):
            print(f"| {burst} | {variant} | " + " | ".join(cells) + " |")


def print_need_table(runs: list[dict[str, Any]]) -> None:
    """With every stream admitted: the device seconds a second they need at the most of them playing at once, by
    part, over seeds (above 1 the device falls behind whatever order it runs the work in)."""
    print(
        "\nEvery stream admitted: device seconds a second they need at the most playing at once (min-max over seeds)"
    )
    print("| burst | device costs | " + " | ".join(NEED_COLUMNS) + " |")
    print("|---|---|" + "---|" * len(NEED_COLUMNS))
    for burst, variant in itertools.product([b.name for b in GOAL_BURSTS], VARIANTS):
        needs = [
            r["playing_need"]
            for r in runs
            if (r["arrivals"], r["variant"], r["admission"]) == (burst, variant, "off")
        ]
        if needs:
            print(f"| {burst} | {variant} | " + " | ".join(need_cells(needs)) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "simulate" / "burst_costs.json")
    p.add_argument(
        "--cost-model",
        type=Path,
        default=MEASURED,
        help="the measured costs the variants scale",
    )
    add_engine_step_option(p)
    p.add_argument(
        "--admission",
        default="{}",
        help="JSON keyword settings for Admission over the profile's (not admission off)",
    )
    add_device_options(p)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="seed 0, the 48 kHz burst")
    args = p.parse_args(argv)
    seeds = SEEDS[:1] if args.quick else SEEDS
    bursts = [GOAL_BURSTS[2].name] if args.quick else [b.name for b in GOAL_BURSTS]
    json.loads(args.admission)  # a bad --admission fails here, before the workers start (--engine-pace below)
    pace = engine_pace(args.engine_pace)
    step = engine_step(args.engine_step)
    jobs: list[Job] = list(
        itertools.product(
            [str(args.cost_model)],
            VARIANTS,
            bursts,
            ADMISSIONS,
            seeds,
            [args.admission],
            [args.device_sharing],
            [pace],
            [step],
        )
    )
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs))
    print_table(runs, args.device_sharing)
    print_need_table(runs)
    write_results(
        args.json,
        {
            "cost_model": repo_path(args.cost_model),
            "host_ms_per_audio_second": MEASURED_HOST_MS,
            "engine_step_ms": None if step is None else {"fixed": step[0].fixed, "per_row": step[0].per_unit},
            "engine_step_from": None if step is None else step[1],
            "admission_over_profile": json.loads(args.admission),
            "device_sharing": args.device_sharing,
            "engine_pace": None if pace is None else asdict(pace),
            "runs": runs,
        },
    )
    return 0
