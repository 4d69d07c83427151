"""The goal bursts at vLLM's published engine step, one onboarding lever added at a time:
`python -m bench sim burst_levers [--cost-model F] [--sr-tf32-model F] [--json OUT] [--quick]`.

The cost model (`bench/cost_models/h200-graphs-vllm-step.json`) keeps the H200's measured codec and replaces the
engine step nobody measured here (3 ms, from a transformers graph on an H100) with vLLM's own published time per
output token for the same architecture: 1.7 ms + 0.02 ms per row, prompts folded into the step (the model's `source`
says where each figure comes from). At that step the engine runs streams ahead of real time, and what binds a 5 s
burst moves to the codec's calls between the engine's steps (`bench.sim.breakdown`).

Each rung keeps the ones above it, and runs with the service's admission (`served`) and with admission off (what the
modelled device carries), seeds 0-2, host 1.4 ms per audio second:
1. as served;
2. `hold 1 s`: the codec scheduler holds live windows while none is due within 1 s (`SchedulerPolicy.hold_slack_s`),
   so streams ahead of real time are decoded in fewer, fuller calls;
3. `exact 20, growth 1.2`: every stream asks for the exact first chunk, of 20 tokens (20 + 24 look-ahead ids before
   the first audio, where the served exact chunk waits for 25 + 24), with chunks growing 1.2x;
4. `ramp floor 64`: admission's ramp (rule 0) lets 64 streams be recent, not 32;
5. `pace margin 1.5`: admission's LLM pace rule (rule 2) asks for 1.5x real time, not 2x;
6. `codec share 1.6`: admission's codec cost rule (rule 3) caps the projected cost at 1.6 of the device, not 1.2;
7. `no spacing`: admission's spacing near a limit (rule 1b) is off.
At 48 kHz the ladder runs on the model and on its twin with AP-BWE in TF32. Steady arrivals (over 30 s) and 10 s
bursts run as served only, for the capacity line beside the bursts.

A prediction from a cost model, not a measurement, and the rungs below the first are not what the service ships:
each is a setting (a `SchedulerPolicy` field, a `StreamingConfig` schedule, an `Admission` keyword) that this bench
sets. None ships, because floods and sustained overload pay for them: `bench.sim.overload` with the same settings
(`--policy`, `--streaming`, `--admission`) lets admitted streams underrun from the hold on, and many more once rules
4-7 loosen admission (docs/decisions/engine-step.md).
"""

from __future__ import annotations

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import write_results
from bench.sim.goals import GOAL_BURSTS, MEASURED_HOST_MS, STEADY_ARRIVALS, Arrivals, arrivals_named
from bench.sim.run import ADMISSION_OFF, SimConfig, served_streaming, simulate
from bench.standin.cost_model import CostModel
from services.device.calls import SchedulerPolicy

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "bench" / "cost_models" / "h200-graphs-vllm-step.json"
MODEL_SR_TF32 = ROOT / "bench" / "cost_models" / "h200-graphs-vllm-step-sr-tf32.json"
SEEDS = (0, 1, 2)
# Beside the goal bursts, as served only (the first rung): steady arrivals and 10 s bursts, for the capacity line.
CONTEXT = (
    *STEADY_ARRIVALS,
    Arrivals("250 @16k within 10 s", 250, 10.0, 16_000),
    Arrivals("200 @48k within 10 s", 200, 10.0, 48_000),
)
# Each rung: its name and what it sets over the rungs before it (SimConfig fields; `admission` merges).
RUNGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("as served", {}),
    ("hold 1 s", {"policy": {"hold_slack_s": 1.0}}),
    ("exact 20, growth 1.2", {"latency": "exact", "streaming": {"first_chunk_tokens": 20, "growth": 1.2}}),
    ("ramp floor 64", {"admission": {"ramp_floor": 64}}),
    ("pace margin 1.5", {"admission": {"pace_margin": 1.5}}),
    ("codec share 1.6", {"admission": {"max_codec_share": 1.6}}),
    ("no spacing", {"admission": {"spacing_s": 0.0}}),
)
ADMISSIONS = ("served", "off")


def rung_fields(rung: int) -> dict[str, Any]:
    """The SimConfig fields of a rung with every rung above it."""
    fields: dict[str, Any] = {}
    for _, adds in RUNGS[: rung + 1]:
        for key, value in adds.items():
            fields[key] = {**fields.get(key, {}), **value} if isinstance(value, dict) else value
    return fields


def sim_config(model: CostModel, burst: str, rung: int, admission: str, seed: int) -> SimConfig:
    _, streams, within, rate, _ = arrivals_named(burst, GOAL_BURSTS + CONTEXT)
    fields = rung_fields(rung)
    kwargs: dict[str, Any] = {
        "latency": fields.get("latency", "balanced"),
        "admission": ADMISSION_OFF if admission == "off" else fields.get("admission", {}),
        "policy": SchedulerPolicy(**fields.get("policy", {})),
    }
    if "streaming" in fields:
        kwargs["streaming"] = served_streaming(**fields["streaming"])
    return SimConfig(model, streams, sample_rate=rate, arrive_within_s=within, seed=seed, **kwargs)


def run_one(job: tuple[str, str, int, str, int]) -> dict[str, Any]:
    model_path, burst, rung, admission, seed = job
    model = CostModel.load(model_path).with_overrides(host_ms=MEASURED_HOST_MS)
    report = simulate(sim_config(model, burst, rung, admission, seed))
    return {
        "cost_model": Path(model_path).stem,
        "burst": burst,
        "rung": RUNGS[rung][0],
        "admission": admission,
        "seed": seed,
        "admitted": report["streams_admitted"],
        "underran": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "refused_by": report["refused_by"],
        "mean_decode_batch": report["mean_decode_batch"],
    }


def jobs_for(
    cost_model: Path,
    sr_tf32_model: Path | None,
    bursts: tuple[Any, ...],
    seeds: tuple[int, ...],
    context: bool,
) -> list[tuple[str, str, int, str, int]]:
    """The goal bursts on every rung, then (with `context`) the steady and 10 s arrivals as served; at 48 kHz on
    the model and on its AP-BWE TF32 twin."""
    plan = [(b, rung) for b in bursts for rung in range(len(RUNGS))]
    plan += [(b, 0) for b in CONTEXT] if context else []
    jobs = []
    for (arrivals, rung), admission, seed in itertools.product(plan, ADMISSIONS, seeds):
        burst, rate = arrivals[0], arrivals[3]  # name and sample rate (`Arrivals`, or a plain tuple in tests)
        models = [cost_model] + ([sr_tf32_model] if rate == 48_000 and sr_tf32_model is not None else [])
        jobs += [(str(m), burst, rung, admission, seed) for m in models]
    return jobs


def _span(values: list[float]) -> str:
    return f"{round(min(values))}-{round(max(values))}" if values else "-"


def print_table(runs: list[dict[str, Any]]) -> None:
    print(
        f"Admitted / underran (100 ms prebuffer) by seed, first audio p95 ms, decode rows per call; "
        f"host {MEASURED_HOST_MS} ms per audio second"
    )
    print(
        "| burst | cost model | rung | served: admitted | underran | p95 | rows/call | refused by (3 seeds) | off: underran | p95 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = list(dict.fromkeys((r["burst"], r["cost_model"], r["rung"]) for r in runs))
    for burst, model, rung in keys:
        cell = {
            a: sorted(
                (
                    r
                    for r in runs
                    if (r["burst"], r["cost_model"], r["rung"], r["admission"]) == (burst, model, rung, a)
                ),
                key=lambda r: r["seed"],
            )
            for a in ADMISSIONS
        }
        served, off = cell["served"], cell["off"]
        refused: dict[str, int] = {}
        for r in served:
            for rule, n in (r["refused_by"] or {}).items():
                refused[rule] = refused.get(rule, 0) + n
        print(
            f"| {burst} | {model} | {rung} | {'/'.join(str(r['admitted']) for r in served)} | "
            f"{'/'.join(str(r['underran']) for r in served)} | "
            f"{_span([r['ttfa_ms_p95'] for r in served if r['ttfa_ms_p95'] is not None])} | "
            f"{'/'.join(str(r['mean_decode_batch']) for r in served)} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(refused.items())) or '-'} | "
            f"{'/'.join(str(r['underran']) for r in off)} | "
            f"{_span([r['ttfa_ms_p95'] for r in off if r['ttfa_ms_p95'] is not None])} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost-model", type=Path, default=MODEL)
    p.add_argument(
        "--sr-tf32-model",
        type=Path,
        default=None,
        help="48 kHz also on this twin with AP-BWE in TF32 (default: the twin of the default model)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench" / "results" / "simulate" / "vllm-step" / "burst-levers.json",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--quick", action="store_true", help="seed 0 and the 64-stream burst only, no steady arrivals"
    )
    args = p.parse_args(argv)
    sr_tf32 = args.sr_tf32_model or (MODEL_SR_TF32 if args.cost_model.resolve() == MODEL.resolve() else None)
    seeds = SEEDS[:1] if args.quick else SEEDS
    bursts = GOAL_BURSTS[:1] if args.quick else GOAL_BURSTS
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs_for(args.cost_model, sr_tf32, bursts, seeds, not args.quick)))
    print_table(runs)
    print()
    write_results(
        args.json,
        {
            "cost_model": args.cost_model.name,
            "host_ms_per_audio_second": MEASURED_HOST_MS,
            "rungs": [{"name": name, "adds": adds} for name, adds in RUNGS],
            "runs": runs,
        },
    )
    return 0
