"""What the engine step's fixed device time decides in a burst: `python -m bench sim_engine_step [--json OUT]`.

At the H200's graph costs (`bench/cost_models/h200-graphs.json`) the codec is measured and the engine is not: its step
is 3 ms + 0.02 ms per row, and a step that takes newcomers' prompts adds 3 ms + 0.004 ms per prompt token. The 3 ms
came from a transformers CUDA graph on an H100 (bench/gpu/llm_step.py), not from vLLM, which the lent GPU image lacks
and whose wheels do not fit what a call carries. In a 5 s burst the device is busy from the first arrival to the last
first audio, and those fixed parts are the largest single term of the onboarding span (`bench.sim.breakdown`): about
2.1 of its 5.4 device seconds at 250 streams (host 1.4). This bench varies them alone, everything else as served, over the goal
bursts (64 at 16 kHz within 2 s; 250 at 16 kHz and 200 at 48 kHz within 5 s), seeds 0-2, host 1.4 ms per audio second
(the API path's measured CPU): with the service's admission (`served`), with the opt-in `own_seconds` profile, and with
admission off (what the modelled device carries). Each row reports streams admitted, streams that underran at a
100 ms prebuffer, first audio p95, what the refusals were, and the engine's share (steps and prefill) of the onboarding
span's device seconds.

A prediction from a cost model, not a measurement: it says how cheap vLLM's step must be on the device for the bursts
to hold, which only a GPU running vLLM can confirm.
"""

from __future__ import annotations

import argparse
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.sim.run import ADMISSION_OFF, SimConfig, served_streaming, simulate
from bench.standin.cost_model import CostModel, Linear
from services.device.admission_profiles import ADMISSION_PROFILES
from services.device.calls import CallSecondsRead

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "bench" / "cost_models" / "h200-graphs.json"
MODEL_SR_TF32 = ROOT / "bench" / "cost_models" / "h200-graphs-sr-tf32.json"  # AP-BWE's graphs in TF32
HOST_MS = 1.4  # the API path's measured CPU per audio second
# (step fixed ms, prefill fixed ms): the model as it stands, then prefill folded into the step (vLLM schedules
# prompts and decodes in one forward pass), then cheaper steps down to about a graph's launch floor
ENGINE_FIXED_MS = ((3.0, 3.0), (3.0, 0.0), (2.0, 0.0), (1.0, 0.0))
# (name, streams, arrive within s, sample rate)
BURSTS = (
    ("64 @16k within 2 s", 64, 2.0, 16_000),
    ("250 @16k within 5 s", 250, 5.0, 16_000),
    ("200 @48k within 5 s", 200, 5.0, 48_000),
)
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
LEVER_BURSTS = BURSTS[1:]  # the two 5 s bursts


def engine_model(base: CostModel, step_fixed_ms: float, prefill_fixed_ms: float) -> CostModel:
    """`base` with the engine step's and the prefill's fixed milliseconds replaced (per row and per token kept)."""
    return replace(
        base,
        llm_step=Linear(step_fixed_ms, base.llm_step.per_unit),
        llm_prefill=Linear(prefill_fixed_ms, base.llm_prefill.per_unit),
        name=f"{base.name} (engine step fixed {step_fixed_ms} ms, prefill fixed {prefill_fixed_ms} ms)",
    ).with_overrides(host_ms=HOST_MS)


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
    _, streams, within, rate = next(b for b in BURSTS if b[0] == burst)
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
        "sr": "tf32" if Path(model_path).name == MODEL_SR_TF32.name else "fp32",
        "latency": latency,
        "growth": growth,
        "underran": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "first_chunks": report["first_chunks"],
    }


def lever_jobs(seeds: tuple[int, ...]) -> list[tuple[str, tuple[float, float], str, tuple[str, float], int]]:
    jobs = []
    for fixed, (burst, _, _, rate), schedule, seed in itertools.product(
        ENGINE_FIXED_MS, LEVER_BURSTS, SCHEDULES, seeds
    ):
        models = (MODEL, MODEL_SR_TF32) if rate == 48_000 else (MODEL,)
        jobs += [(str(m), fixed, burst, schedule, seed) for m in models]
    return jobs


def print_levers(runs: list[dict[str, Any]]) -> None:
    print(
        "\nAdmission off, within 5 s: streams that underran by seed (100 ms prebuffer) and first audio p95 ms, "
        "by the engine's fixed ms and the schedule (first chunk asked for, growth)"
    )
    header = [f"{latency}, {growth}" for latency, growth in SCHEDULES]
    print("| step + prefill fixed ms | burst | AP-BWE | " + " | ".join(header) + " |")
    print("|---|---|---|" + "---|" * len(SCHEDULES))
    keys = sorted(
        {(r["step_fixed_ms"], r["prefill_fixed_ms"], r["burst"], r["sr"]) for r in runs},
        key=lambda k: (-k[0], -k[1], k[2], k[3]),
    )
    for step_ms, prefill_ms, burst, sr in keys:
        cells = []
        for latency, growth in SCHEDULES:
            rows = sorted(
                (
                    r
                    for r in runs
                    if (r["step_fixed_ms"], r["prefill_fixed_ms"], r["burst"], r["sr"])
                    == (step_ms, prefill_ms, burst, sr)
                    and (r["latency"], r["growth"]) == (latency, growth)
                ),
                key=lambda r: r["seed"],
            )
            p95 = [round(r["ttfa_ms_p95"]) for r in rows if r["ttfa_ms_p95"] is not None]
            span = f"{min(p95)}-{max(p95)}" if p95 else "-"
            cells.append(f"{' / '.join(str(r['underran']) for r in rows)}, {span}")
        apbwe = sr if "48k" in burst else ""
        print(f"| {step_ms} + {prefill_ms} | {burst} | {apbwe} | " + " | ".join(cells) + " |")


def print_table(runs: list[dict[str, Any]]) -> None:
    print(
        f"Bursts by the engine's fixed device ms (host {HOST_MS} ms per audio second; seeds "
        f"{', '.join(map(str, SEEDS))}): admitted, underran (100 ms prebuffer), first audio p95 ms, "
        "engine share of onboarding"
    )
    print(
        "| step + prefill fixed ms | burst | admission | admitted | underran | first audio p95 | engine share | refused by |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (step_ms, prefill_ms), (burst, *_), admission in itertools.product(
        ENGINE_FIXED_MS, BURSTS, ADMISSIONS
    ):
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
    args = p.parse_args(argv)
    seeds = SEEDS[:1] if args.quick else SEEDS
    bursts = BURSTS[:1] if args.quick else BURSTS
    jobs = [
        (str(args.cost_model), fixed, burst[0], admission, seed)
        for fixed, burst, admission, seed in itertools.product(ENGINE_FIXED_MS, bursts, ADMISSIONS, seeds)
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs))
        levers = [] if args.quick else list(pool.map(run_lever, lever_jobs(seeds)))
    print_table(runs)
    if levers:
        print_levers(levers)
    result = {
        "cost_model": str(args.cost_model.name),
        "host_ms_per_audio_second": HOST_MS,
        "runs": runs,
        "levers": levers,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
