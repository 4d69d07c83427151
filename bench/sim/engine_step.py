"""What the engine step's fixed device time decides in a burst: `python -m bench sim engine_step [--cost-model F]
[--sr-tf32-model F] [--json OUT] [--quick]`.

At the H200's graph costs (`bench/cost_models/h200-graphs.json`) the codec is measured and the engine is not: its step
is 3 ms + 0.02 ms per row, and a step that takes newcomers' prompts adds 3 ms + 0.004 ms per prompt token. The 3 ms
came from a transformers CUDA graph on an H100 (bench/gpu/llm_step.py), not from vLLM, which the lent GPU image lacks
and whose wheels do not fit what a call carries. In a 5 s burst the device is busy from the first arrival to the last
first audio, and those fixed parts are the largest single term of the onboarding span (`bench.sim.breakdown`): about
2.1 of its 5.4 device seconds at 250 streams (host 1.4 ms per audio second).

The bench varies those two fixed parts alone: the cost model's own first, then what-ifs (prefill folded into the
step; steps of 3, 2 and 1 ms). Everything else is as the model and the service have it, host 1.4 ms per audio second
(the API path's measured CPU), seeds 0-2.
- Part 1, the served schedule, over the goal bursts (64 at 16 kHz within 2 s; 250 at 16 kHz and 200 at 48 kHz within
  5 s): with the service's admission (`served`), the opt-in `own_seconds` profile, and admission off (what the
  modelled device carries). Each row: streams admitted, streams that underran at a 100 ms prebuffer, first audio
  p95, the refusals by rule, and the engine's share (steps and prefill) of the onboarding span's device seconds.
- Part 2, admission off, the two 5 s bursts on three schedules (the served one, growth 1.25, the exact first chunk
  with growth 1.1), and at 48 kHz also on the model's twin with AP-BWE in TF32 (`--sr-tf32-model`; for the default
  model, `h200-graphs-sr-tf32.json`).

A prediction from a cost model, not a measurement. With a measured engine step in a cost model (`llm_step_ms`; the
GPU kit's `bench/gpu/engine_step.py` measures the closest proxy), `--cost-model` on it reads what that step holds.
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
from bench.sim.run import ADMISSION_OFF, SimConfig, served_streaming, simulate
from bench.standin.cost_model import CostModel, Linear
from services.device.admission_profiles import ADMISSION_PROFILES
from services.device.calls import CallSecondsRead

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "bench" / "cost_models" / "h200-graphs.json"
MODEL_SR_TF32 = ROOT / "bench" / "cost_models" / "h200-graphs-sr-tf32.json"  # AP-BWE's graphs in TF32
# (step fixed ms, prefill fixed ms) beside the cost model's own: prefill folded into the step (vLLM schedules prompts
# and decodes in one forward pass), then cheaper steps down to about a graph's launch floor
WHAT_IF_FIXED_MS = ((3.0, 0.0), (2.0, 0.0), (1.0, 0.0))
OWN_SECONDS = ADMISSION_PROFILES["own_seconds"]
ADMISSIONS: dict[str, tuple[dict[str, Any], CallSecondsRead]] = {
    "served": ({}, "dispatch_to_end"),
    "own_seconds": (OWN_SECONDS.admission, OWN_SECONDS.call_seconds_read),
    "off": (ADMISSION_OFF, "dispatch_to_end"),
}
SEEDS = (0, 1, 2)
# Part 2, admission off: the schedule levers beside the engine's cost. (first chunk asked for, chunk growth): the
# served one (balanced, 1.5; newcomers get the exact one under load, as served), gentler growth, and the exact first
# chunk with growth 1.1 ("A chunk schedule's growth" in docs/benchmarks.md).
SCHEDULES = (("balanced", 1.5), ("balanced", 1.25), ("exact", 1.1))
LEVER_BURSTS = GOAL_BURSTS[1:]  # the two 5 s bursts


def engine_model(base: CostModel, step_fixed_ms: float, prefill_fixed_ms: float) -> CostModel:
    """`base` with the engine step's and the prefill's fixed milliseconds replaced (per row and per token kept), and
    the host at `MEASURED_HOST_MS`."""
    return replace(
        base,
        llm_step=Linear(step_fixed_ms, base.llm_step.per_unit),
        llm_prefill=Linear(prefill_fixed_ms, base.llm_prefill.per_unit),
        name=f"{base.name} (engine step fixed {step_fixed_ms} ms, prefill fixed {prefill_fixed_ms} ms)",
    ).with_overrides(host_ms=MEASURED_HOST_MS)


def engine_costs(model: CostModel) -> tuple[tuple[float, float], ...]:
    """The cost model's own (step, prefill) fixed ms first, then the what-ifs it is not already."""
    own = (model.llm_step.fixed, model.llm_prefill.fixed)
    return (own, *(fixed for fixed in WHAT_IF_FIXED_MS if fixed != own))


def engine_share(report: dict[str, Any]) -> float | None:
    """The engine's share (steps and prefill) of the onboarding span's device seconds."""
    terms = {t["term"]: t for t in report["breakdown"]["onboarding"]["terms"]}
    device = sum(t["device_s"] for name, t in terms.items() if name not in ("host (API CPU)", "device idle"))
    if device <= 0:
        return None
    return round((terms["prefill"]["device_s"] + terms["llm steps"]["device_s"]) / device, 3)


def _burst(
    model_path: str, fixed: tuple[float, float], burst: str, seed: int, **fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One burst at an engine's fixed costs (SimConfig `fields` over the service's defaults): the row's identity and
    the simulator's report."""
    _, streams, within, rate, _ = arrivals_named(burst, GOAL_BURSTS)
    model = engine_model(CostModel.load(model_path), *fixed)
    config = SimConfig(model, streams, sample_rate=rate, arrive_within_s=within, seed=seed, **fields)
    row = {"step_fixed_ms": fixed[0], "prefill_fixed_ms": fixed[1], "burst": burst, "seed": seed}
    return row, simulate(config)


def run_one(job: tuple[str, tuple[float, float], str, str, int]) -> dict[str, Any]:
    """Part 1: one burst on the served schedule under one admission."""
    model_path, fixed, burst, admission, seed = job
    settings, read = ADMISSIONS[admission]
    row, report = _burst(model_path, fixed, burst, seed, admission=settings, call_seconds_read=read)
    return row | {
        "admission": admission,
        "admitted": report["streams_admitted"],
        "underran": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "refused_by": report["refused_by"],
        "engine_share_onboarding": engine_share(report),
        "gpu_busy_ratio": report["gpu_busy_ratio"],
        "mean_decode_batch": report["mean_decode_batch"],
    }


def run_lever(job: tuple[str, tuple[float, float], str, tuple[str, float], int]) -> dict[str, Any]:
    """Part 2: one 5 s burst with admission off, on a schedule, at an engine's fixed costs."""
    model_path, fixed, burst, (latency, growth), seed = job
    row, report = _burst(
        model_path,
        fixed,
        burst,
        seed,
        admission=ADMISSION_OFF,
        latency=latency,
        streaming=served_streaming(growth=growth),
    )
    return row | {
        "cost_model": Path(model_path).stem,
        "latency": latency,
        "growth": growth,
        "underran": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "first_chunks": report["first_chunks"],
    }


def lever_jobs(
    cost_model: Path,
    sr_tf32_model: Path | None,
    costs: tuple[tuple[float, float], ...],
    seeds: tuple[int, ...],
) -> list[tuple[str, tuple[float, float], str, tuple[str, float], int]]:
    """Part 2's runs: each 5 s burst on `cost_model`, and at 48 kHz also on its AP-BWE TF32 twin when there is one."""
    jobs = []
    for fixed, (burst, _, _, rate, _), schedule, seed in itertools.product(
        costs, LEVER_BURSTS, SCHEDULES, seeds
    ):
        models = [cost_model] + ([sr_tf32_model] if rate == 48_000 and sr_tf32_model is not None else [])
        jobs += [(str(m), fixed, burst, schedule, seed) for m in models]
    return jobs


def print_levers(runs: list[dict[str, Any]]) -> None:
    print(
        "\nAdmission off, within 5 s: streams that underran by seed (100 ms prebuffer) and first audio p95 ms, "
        "by the engine's fixed ms and the schedule (first chunk asked for, growth)"
    )
    header = [f"{latency}, {growth}" for latency, growth in SCHEDULES]
    print("| step + prefill fixed ms | burst | cost model | " + " | ".join(header) + " |")
    print("|---|---|---|" + "---|" * len(SCHEDULES))
    keys = sorted(
        {(r["step_fixed_ms"], r["prefill_fixed_ms"], r["burst"], r["cost_model"]) for r in runs},
        key=lambda k: (-k[0], -k[1], k[2], k[3]),
    )
    for step_ms, prefill_ms, burst, model_name in keys:
        cells = []
        for latency, growth in SCHEDULES:
            rows = sorted(
                (
                    r
                    for r in runs
                    if (r["step_fixed_ms"], r["prefill_fixed_ms"], r["burst"], r["cost_model"])
                    == (step_ms, prefill_ms, burst, model_name)
                    and (r["latency"], r["growth"]) == (latency, growth)
                ),
                key=lambda r: r["seed"],
            )
            p95 = [round(r["ttfa_ms_p95"]) for r in rows if r["ttfa_ms_p95"] is not None]
            span = f"{min(p95)}-{max(p95)}" if p95 else "-"
            cells.append(f"{' / '.join(str(r['underran']) for r in rows)}, {span}")
        print(f"| {step_ms} + {prefill_ms} | {burst} | {model_name} | " + " | ".join(cells) + " |")


def print_table(runs: list[dict[str, Any]], costs: tuple[tuple[float, float], ...]) -> None:
    print(
        f"Bursts by the engine's fixed device ms (host {MEASURED_HOST_MS} ms per audio second; seeds "
        f"{', '.join(map(str, SEEDS))}): admitted, underran (100 ms prebuffer), first audio p95 ms, "
        "engine share of onboarding"
    )
    print(
        "| step + prefill fixed ms | burst | admission | admitted | underran | first audio p95 | engine share | refused by |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (step_ms, prefill_ms), (burst, *_), admission in itertools.product(costs, GOAL_BURSTS, ADMISSIONS):
        rows = [
            r
            for r in runs
            if (r["step_fixed_ms"], r["prefill_fixed_ms"], r["burst"], r["admission"])
            == (step_ms, prefill_ms, burst, admission)
        ]
        if not rows:
            continue
        refused: dict[str, int] = {}
        for r in rows:
            for rule, n in (r["refused_by"] or {}).items():
                refused[rule] = refused.get(rule, 0) + n
        print(
            f"| {step_ms} + {prefill_ms} | {burst} | {admission} | "
            f"{', '.join(str(r['admitted']) for r in rows)} | "
            f"{', '.join(str(r['underran']) for r in rows)} | "
            f"{', '.join(str(round(r['ttfa_ms_p95'])) for r in rows if r['ttfa_ms_p95'] is not None)} | "
            f"{', '.join(str(r['engine_share_onboarding']) for r in rows)} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(refused.items())) or '-'} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost-model", type=Path, default=MODEL)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "simulate" / "engine-step.json")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="seed 0 and the 64-stream burst only, no part 2")
    p.add_argument(
        "--sr-tf32-model",
        type=Path,
        default=None,
        help="part 2 at 48 kHz also on this twin of the cost model with AP-BWE in TF32 (default: the H200 twin "
        "when the cost model is the default one)",
    )
    args = p.parse_args(argv)
    sr_tf32 = args.sr_tf32_model or (MODEL_SR_TF32 if args.cost_model.resolve() == MODEL.resolve() else None)
    costs = engine_costs(CostModel.load(args.cost_model))
    seeds = SEEDS[:1] if args.quick else SEEDS
    bursts = GOAL_BURSTS[:1] if args.quick else GOAL_BURSTS
    jobs = [
        (str(args.cost_model), fixed, burst[0], admission, seed)
        for fixed, burst, admission, seed in itertools.product(costs, bursts, ADMISSIONS, seeds)
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs))
        levers = (
            []
            if args.quick
            else list(pool.map(run_lever, lever_jobs(args.cost_model, sr_tf32, costs, seeds)))
        )
    print_table(runs, costs)
    if levers:
        print_levers(levers)
    result = {
        "cost_model": str(args.cost_model.name),
        "host_ms_per_audio_second": MEASURED_HOST_MS,
        "runs": runs,
        "levers": levers,
    }
    print()
    write_results(args.json, result)
    return 0
