"""Steady and burst arrivals at the H200's graph costs, and what binds: `python -m bench sim h200 [--json OUT]`.

The burst and steady cases the service is sized for (`bench/cost_models/h200-graphs.json`: decode TF32 and AP-BWE fp32 as served, the prenet's
share per length, LLM 3 ms + 0.02 ms per row, host 5 ms per audio second): 250 streams at 16 kHz and 200 at 48 kHz
arriving over 30 s (steady) or within 5 s, and 64 at 16 kHz within 2 s, each with the service's admission
(`before`), with `engine_lead_pace` 2.2 (`engine lead`, services/device/engine_lead.py), with the codec read as its
own device seconds under the service's `own_seconds` admission profile (`own seconds`, opt-in) and with admission off (what the modelled
device carries). Prints streams held, underrunning streams (100 ms prebuffer), first audio p50/p95, and
per case what the onboarding span (first arrival to the last first audio, bench/sim/breakdown.py) spent the device
on; writes every report with its full breakdown. `--device-sharing sliced`: the engine and the codec share the device
by time slices, as a GPU shares itself between two processes (bench/sim/sliced_device.py; written to
`h200-sliced.json`).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.sim.goals import GOAL_BURSTS, STEADY_ARRIVALS, arrivals_named
from bench.sim.run import ADMISSION_OFF, SimConfig, simulate
from bench.sim.sliced_device import DEVICE_SHARINGS, DeviceSharing
from bench.standin.cost_model import CostModel
from services.device.admission_profiles import ADMISSION_PROFILES
from services.device.calls import CallSecondsRead
from services.device.engine_lead import MEASURED_LEAD_PACE

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "bench" / "cost_models" / "h200-graphs.json"
CASES = (*STEADY_ARRIVALS, *GOAL_BURSTS)
OWN_SECONDS = ADMISSION_PROFILES["own_seconds"]
# name: (admission settings, what admission reads as a codec call's seconds)
VARIANTS: dict[str, tuple[dict[str, Any], CallSecondsRead]] = {
    "before": ({}, "dispatch_to_end"),
    "engine lead": ({"engine_lead_pace": MEASURED_LEAD_PACE}, "dispatch_to_end"),
    "own seconds": (OWN_SECONDS.admission, OWN_SECONDS.call_seconds_read),
    "admission off": (ADMISSION_OFF, "dispatch_to_end"),
}


def run_one(job: tuple[str, str, DeviceSharing]) -> dict[str, Any]:
    case, variant, sharing = job
    _, streams, within, rate, _ = arrivals_named(case, CASES)
    admission, read = VARIANTS[variant]
    report = simulate(
        SimConfig(
            CostModel.load(MODEL),
            streams,
            sample_rate=rate,
            arrive_within_s=within,
            admission=admission,
            call_seconds_read=read,
            device_sharing=sharing,
        )
    )
    return {"case": case, "variant": variant, "report": report}


def _binds(report: dict[str, Any]) -> str:
    """The onboarding span's device shares and decode rows per call, host share, admission's codec read/own."""
    span = report["breakdown"].get("onboarding") or report["breakdown"]["run"]
    terms = {r["term"]: r for r in span["terms"]}
    share = {t: terms[t]["share"] if t in terms else 0.0 for t in terms}
    llm = share.get("prefill", 0) + share.get("llm steps", 0)
    decode = share.get("first windows", 0) + share.get("steady windows", 0)
    sr = share.get("AP-BWE first", 0) + share.get("AP-BWE steady", 0)
    rows = terms.get("steady windows", {}).get("rows_per_call")
    adm = span["admission"]
    return (
        f"{span['to_s'] - span['from_s']:.1f} s | {llm:.2f} ({share.get('prefill', 0):.2f}) | {decode:.2f} | "
        f"{sr:.2f} | {rows} | {share.get('host (API CPU)', 0):.2f} | "
        f"{adm['codec_cost_admission']} / {adm['codec_cost_own']}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--json", type=Path, default=None, help="default bench/results/simulate/h200[-sliced].json"
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device-sharing", choices=DEVICE_SHARINGS, default="serial")
    args = p.parse_args(argv)
    name = "h200.json" if args.device_sharing == "serial" else f"h200-{args.device_sharing}.json"
    args.json = args.json or ROOT / "bench" / "results" / "simulate" / name
    jobs = [(case[0], variant, args.device_sharing) for case in CASES for variant in VARIANTS]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs))
    print("| case | admission | held | underrunning | first audio p50 / p95 ms | missed deadlines |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        r = run["report"]
        print(
            f"| {run['case']} | {run['variant']} | {r['streams_admitted']} of {r['streams_requested']} | "
            f"{r['underruns_prebuffer_100ms']} | {r['ttfa_ms_p50']} / {r['ttfa_ms_p95']} | {r['missed_deadlines']} |"
        )
    print(
        "\nOnboarding (first arrival to last first audio): length | device share LLM (of it prefill) | BiCodec | "
        "AP-BWE | decode rows per steady call | host share | admission's codec s per stream-second / the codec's own"
    )
    print(
        "\n| case | admission | span | LLM (prefill) | BiCodec | AP-BWE | rows/call | host | codec read / own |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['case']} | {run['variant']} | {_binds(run['report'])} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"cost_model": str(MODEL.relative_to(ROOT)), "device_sharing": args.device_sharing, "runs": runs},
            indent=1,
        )
        + "\n"
    )
    print(f"\nwrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0
