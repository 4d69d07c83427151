"""How large one codec call may be on the shared device, and how much margin admission keeps:
`python -m bench.sim_call_bounds [--json OUT]`.

The scheduler bounds a BiCodec call at `max_call_decode_tokens` (rows x length bucket) and an AP-BWE call at
`max_call_sr_samples`. A long call holds the device, so every engine step waits behind it (an 8,192-token decode is
~150 ms in the H100 model). This runs the issue's matrix with admission on (the service's defaults otherwise; H100
tf32 cost model, host 1.5 ms per audio second, arrivals within 10 s unless said) for each bound, and prints streams
admitted, streams that underran at a 100 ms prebuffer and the p95 first audio per case and seed. Then the same for
admission's margins at the default bounds (its codec-cost cap, 1.2, and its miss grace, 30 ms), and with admission
off. Writes the JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sim.run import ADMISSION_OFF, SimConfig, simulate
from bench.standin.cost_model import CostModel
from services.codec.calls import SchedulerPolicy

ROOT = Path(__file__).resolve().parents[1]
COST_MODEL = ROOT / "bench" / "cost_models" / "h100-tf32.json"
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Case:
    name: str
    streams: int
    sample_rate: int
    per_row: float
    seed: int
    within_s: float = 10.0
    preamble_ids: int = 1


def cases(sample_rates: tuple[int, ...]) -> list[Case]:
    out = [Case("250", 250, 16000, pr, s) for pr in (0.005, 0.01, 0.02) for s in SEEDS]
    out += [Case("600", 600, 16000, pr, s) for pr in (0.02, 0.056) for s in SEEDS]
    out += [Case("200 at 48 kHz", 200, 48000, pr, s) for pr in (0.005, 0.02, 0.056) for s in SEEDS]
    out += [Case("600 within 2 s", 600, 16000, 0.02, 0, within_s=2.0),
            Case("600, 40 preamble ids", 600, 16000, 0.056, 0, preamble_ids=40),
            Case("600 at 48 kHz", 600, 48000, 0.02, 0), Case("64", 64, 16000, 0.056, 0)]
    return [c for c in out if c.sample_rate in sample_rates]


@dataclass(frozen=True)
class Variant:
    label: str
    bounds: dict[str, int]  # SchedulerPolicy's max_call_* fields; the rest of the policy is the service's
    admission: dict[str, Any]  # Admission's keyword settings; empty: the service's
    sample_rates: tuple[int, ...] = (16000, 48000)


VARIANTS = (
    Variant("decode 2,048 (default)", {"max_call_decode_tokens": 2048}, {}),
    Variant("decode 4,096", {"max_call_decode_tokens": 4096}, {}),
    Variant("decode 8,192 (shipped until 2026-11-24)", {"max_call_decode_tokens": 8192}, {}),
    Variant("AP-BWE 65,536", {"max_call_sr_samples": 65_536}, {}, (48000,)),
    Variant("AP-BWE 32,768", {"max_call_sr_samples": 32_768}, {}, (48000,)),
    Variant("admission: cost cap 1.25", {}, {"max_codec_share": 1.25}),
    Variant("admission: cost cap 1.3", {}, {"max_codec_share": 1.3}),
    Variant("admission: miss grace 50 ms", {}, {"miss_grace_s": 0.05}),
    Variant("admission off (what the device carries)", {}, ADMISSION_OFF, (16000,)),
)


def run_one(args: tuple[Variant, Case]) -> dict[str, Any]:
    variant, case = args
    bounds, admission = variant.bounds, variant.admission
    model = CostModel.load(COST_MODEL).with_overrides(llm_per_row=case.per_row, host_ms=1.5)
    report = simulate(SimConfig(model, case.streams, sample_rate=case.sample_rate, seed=case.seed,
                                arrive_within_s=case.within_s, preamble_ids=case.preamble_ids,
                                policy=SchedulerPolicy(**bounds), admission=admission))
    return {"variant": variant.label, "bounds": bounds, "admission": {k: str(v) for k, v in admission.items()},
            "case": case.name, "per_row": case.per_row, "seed": case.seed,
            "admitted": report["streams_admitted"], "underrunning": report["underruns_prebuffer_100ms"],
            "ttfa_ms_p95": report["ttfa_ms_p95"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "simulate" / "call-bounds.json")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    jobs = [(variant, case) for variant in VARIANTS for case in cases(variant.sample_rates)]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_one, jobs))
    print("| bounds | case | LLM ms/row | admitted (seeds) | underrunning | p95 first audio ms |")
    print("|---|---|---|---|---|---|")
    for (label, case, per_row), group in itertools.groupby(rows, key=lambda r: (r["variant"], r["case"], r["per_row"])):
        g = list(group)
        print(f"| {label} | {case} | {per_row} | {', '.join(str(r['admitted']) for r in g)} | "
              f"{', '.join(str(r['underrunning']) for r in g)} | {', '.join(str(round(r['ttfa_ms_p95'] or 0)) for r in g)} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
