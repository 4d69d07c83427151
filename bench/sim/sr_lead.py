"""The 48 kHz lead window with and without, in one run: `python -m bench sim sr_lead [--json OUT]`.

A stream's first AP-BWE window needs `min_block` + `context` samples (7.75 tokens); balanced's first chunk keeps 4,
so without the lead window the first 48 kHz audio waited for the second decode window. With it (core.sr_planner)
the first window takes its right context from the first chunk's held overlap while the engine gives each request
3.5x real time or more (`Admission.sr_lead`). This runs each case with the lead (the service's default) and without
(`SimConfig.sr_lead=False`) on the H100 tf32 cost model, host 1.5 ms per audio second, and prints first audio
p50 / p95, streams admitted, streams that underran at a 100 ms prebuffer and deadlines the scheduler saw missed,
per seed. Then the pace bound itself: the lead's cases under sustained load with `sr_lead_needs_pace` at 2.5, 3, 3.5
(the default) and 4. Writes the JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sim.run import SimConfig, simulate
from bench.standin.cost_model import CostModel

ROOT = Path(__file__).resolve().parents[2]
COST_MODEL = ROOT / "bench" / "cost_models" / "h100-tf32.json"
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Case:
    name: str
    streams: int
    per_row: float
    within_s: float
    seeds: tuple[int, ...] = SEEDS


CASES = (
    Case("1 alone", 1, 0.02, 0.0, (0,)),
    Case("32 at once", 32, 0.02, 0.0, (0,)),
    Case("32 at once", 32, 0.056, 0.0, (0,)),
    Case("64 within 10 s", 64, 0.02, 10.0),
    Case("64 within 10 s", 64, 0.056, 10.0),
    Case("200 within 10 s", 200, 0.01, 10.0),
    Case("200 within 10 s", 200, 0.02, 10.0),
    Case("200 within 10 s", 200, 0.056, 10.0),
    Case("600 within 10 s", 600, 0.056, 10.0),
    Case("600 within 2 s", 600, 0.056, 2.0),
)


BOUND_CASES = (
    CASES[3],
    CASES[4],
    CASES[6],
    CASES[8],
)  # 64 within 10 s (0.02, 0.056), 200 (0.02), 600 (0.056)
BOUNDS = (2.5, 3.0, 3.5, 4.0)


def run_one(args: tuple[bool, Case, int, float | None]) -> dict[str, Any]:
    lead, case, seed, bound = args
    model = CostModel.load(COST_MODEL).with_overrides(llm_per_row=case.per_row, host_ms=1.5)
    admission = {} if bound is None else {"sr_lead_needs_pace": bound}
    report = simulate(
        SimConfig(
            model,
            case.streams,
            sample_rate=48_000,
            seed=seed,
            arrive_within_s=case.within_s,
            sr_lead=lead,
            admission=admission,
        )
    )
    return {
        "lead": lead,
        "pace_bound": bound,
        "case": case.name,
        "streams": case.streams,
        "per_row": case.per_row,
        "seed": seed,
        "ttfa_ms_p50": report["ttfa_ms_p50"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "admitted": report["streams_admitted"],
        "underrunning": report["underruns_prebuffer_100ms"],
        "missed_deadlines": report["missed_deadlines"],
        "sr_leads": report["sr_leads"],
        "sr_device_s": report["gpu_busy_seconds"]["sr"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "simulate" / "sr-lead.json")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    jobs: list[tuple[bool, Case, int, float | None]] = [
        (lead, case, seed, None) for case in CASES for lead in (False, True) for seed in case.seeds
    ]
    jobs += [(True, case, seed, bound) for case in BOUND_CASES for bound in BOUNDS for seed in case.seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_one, jobs))
    by_bound = [r for r in rows if r["pace_bound"] is not None]
    rows = [r for r in rows if r["pace_bound"] is None]
    print(
        "| case | LLM ms/row | lead | p50 / p95 first audio ms (seeds) | admitted | underrunning | missed deadlines |"
    )
    print("|---|---|---|---|---|---|---|")
    for (case, per_row, lead), group in itertools.groupby(
        rows, key=lambda r: (r["case"], r["per_row"], r["lead"])
    ):
        g = list(group)
        ttfa = ", ".join(f"{round(r['ttfa_ms_p50'] or 0)} / {round(r['ttfa_ms_p95'] or 0)}" for r in g)
        print(
            f"| {case} | {per_row} | {'yes' if lead else 'no'} | {ttfa} | {', '.join(str(r['admitted']) for r in g)}"
            f" | {', '.join(str(r['underrunning']) for r in g)} | {', '.join(str(r['missed_deadlines']) for r in g)} |"
        )
    print(
        "\n| case | LLM ms/row | lead's pace bound (x real time) | p50 / p95 ms (seeds) | admitted | leads taken | "
        "missed deadlines |"
    )
    print("|---|---|---|---|---|---|---|")
    for (case, per_row, bound), group in itertools.groupby(
        by_bound, key=lambda r: (r["case"], r["per_row"], r["pace_bound"])
    ):
        g = list(group)
        ttfa = ", ".join(f"{round(r['ttfa_ms_p50'] or 0)} / {round(r['ttfa_ms_p95'] or 0)}" for r in g)
        print(
            f"| {case} | {per_row} | {bound} | {ttfa} | {', '.join(str(r['admitted']) for r in g)} | "
            f"{', '.join(str(r['sr_leads'].get('taken', 0)) for r in g)} | "
            f"{', '.join(str(r['missed_deadlines']) for r in g)} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"with_and_without": rows, "pace_bound": by_bound}, indent=2) + "\n")
    return 0
