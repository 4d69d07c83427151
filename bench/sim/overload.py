"""Does any admitted stream underrun, in bursts and in sustained overload? `python -m bench sim overload [--json OUT]`.

The goal rows (`bench.sim.load`) put every arrival within 10 s on seeds 0-2. This runs them on more seeds beside 90 s
of steady arrivals at 1.5x and 3x what the device holds (the H100 tf32 cost model the loads are sized for, unless
`--cost-model`; host 1.5 ms per audio second; the service's admission unless `--profile` names another profile or
`--admission` overrides its keyword settings), and prints, per case, the streams admitted and the streams that
underran at a 100 ms prebuffer, seed by seed (docs/benchmarks.md, "Bursts and sustained overload").
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.harness import repo_path, write_results
from bench.sim.options import add_device_options, engine_pace
from bench.sim.run import SimConfig, served_streaming, simulate
from bench.sim.sliced_device import DeviceSharing
from bench.standin.cost_model import CostModel
from core.llm.engine_pace import EnginePace
from services.device.admission_profiles import ADMISSION_PROFILE_NAMES, ADMISSION_PROFILES
from services.device.calls import CALL_SECONDS_READS, CallSecondsRead, SchedulerPolicy
from services.device.carried import known_carried
from services.device.device_layout import profile_on

ROOT = Path(__file__).resolve().parents[2]
COST_MODEL = ROOT / "bench" / "cost_models" / "h100-tf32.json"
HOST_MS = 1.5  # API host milliseconds per audio second

# (sample rate, LLM ms per row, streams offered, arrivals within s, preamble ids), seeds
CASES: list[tuple[tuple[int, float, int, float, int], range]] = [
    ((16_000, 0.056, 3_645, 90.0, 1), range(6)),  # 3x for 90 s
    ((16_000, 0.02, 5_130, 90.0, 1), range(6)),
    ((16_000, 0.056, 600, 10.0, 1), range(6)),  # the goal's flood
    ((16_000, 0.02, 250, 10.0, 1), range(6)),  # the goal's 250
    ((48_000, 0.01, 3_456, 90.0, 1), range(3)),
    ((48_000, 0.01, 1_728, 90.0, 1), range(3)),  # 1.5x for 90 s
    ((16_000, 0.056, 1_822, 90.0, 1), range(3)),
    ((16_000, 0.01, 250, 10.0, 1), range(3)),
    ((16_000, 0.056, 250, 10.0, 1), range(3)),
    ((16_000, 0.005, 250, 10.0, 1), range(3)),
    ((16_000, 0.02, 600, 2.0, 1), range(3)),
    ((48_000, 0.01, 200, 10.0, 1), range(3)),
    ((16_000, 0.056, 600, 10.0, 40), range(3)),
    ((48_000, 0.01, 600, 10.0, 1), range(3)),
    ((16_000, 0.056, 64, 10.0, 1), range(3)),
    ((16_000, 0.056, 64, 10.0, 40), range(3)),
    ((16_000, 0.02, 600, 10.0, 1), range(3)),
]


@dataclass(frozen=True)
class Run:
    """One case on one seed, with the settings every run shares."""

    case: tuple[int, float, int, float, int]
    seed: int
    admission: dict[str, Any]
    policy: dict[str, Any]
    call_seconds_read: CallSecondsRead
    cost_model: Path = COST_MODEL
    device_sharing: DeviceSharing = "serial"
    streaming: tuple[tuple[str, Any], ...] = ()  # StreamingConfig fields over the service's schedule
    engine_pace: EnginePace | None = None  # None: the engine steps every request (bench/sim/engine_pace.py)


def run_case(run: Run) -> dict[str, Any]:
    (rate, per_row, streams, within, preamble), seed = run.case, run.seed
    admission, policy, read = run.admission, run.policy, run.call_seconds_read
    measured = CostModel.load(run.cost_model)
    model = measured.with_overrides(llm_per_row=per_row, host_ms=HOST_MS)
    if "carried" in admission and per_row > measured.llm_step.per_unit:
        # an engine slower than the model's own is not the device a carried figure was stated for (carried.py)
        admission = {**admission, "carried": None}
    report = simulate(
        SimConfig(
            model,
            streams,
            sample_rate=rate,
            arrive_within_s=within,
            seed=seed,
            preamble_ids=preamble,
            admission=admission,
            policy=SchedulerPolicy(**policy),
            call_seconds_read=read,
            device_sharing=run.device_sharing,
            streaming=served_streaming(**dict(run.streaming)),
            engine_pace=run.engine_pace,
        )
    )
    return {
        "sample_rate": rate,
        "llm_per_row": per_row,
        "streams": streams,
        "within_s": within,
        "preamble_ids": preamble,
        "seed": seed,
        "admitted": report["streams_admitted"],
        "underrunning_streams": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "refused_by": report["refused_by"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--admission", default="{}", help="JSON keyword settings for Admission (default: the service's)"
    )
    p.add_argument(
        "--profile",
        choices=ADMISSION_PROFILE_NAMES,
        default=None,
        help="an admission profile (TTS_ADMISSION_PROFILE): its settings and its codec seconds read, under "
        "--admission's (its --call-seconds-read then is the profile's)",
    )
    p.add_argument(
        "--policy",
        default="{}",
        help="JSON keyword settings for SchedulerPolicy (default: the service's; "
        "'{\"decode_reach\": null}' runs whole windows through the wave generator)",
    )
    p.add_argument(
        "--call-seconds-read",
        choices=CALL_SECONDS_READS,
        default="dispatch_to_end",
        help="what admission reads as a codec call's seconds (python -m bench sim load --call-seconds-read)",
    )
    p.add_argument(
        "--cost-model",
        type=Path,
        default=COST_MODEL,
        help="cost model (default: the H100 tf32 model the admission caps were calibrated on)",
    )
    p.add_argument(
        "--streaming",
        default="{}",
        help="JSON StreamingConfig fields over the service's chunk schedule (python -m bench sim load --streaming)",
    )
    add_device_options(p)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--seeds", type=int, default=None, help="at most this many seeds a case (default: every one)"
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    admission, policy = json.loads(args.admission), json.loads(args.policy)
    pace = engine_pace(args.engine_pace)
    read: CallSecondsRead = args.call_seconds_read
    if args.profile is not None:
        # read on the modelled device, as the service reads it on its layout's (device_layout.py)
        # and what the modelled GPU is known to carry there, as the service reads it for its GPU (carried.py)
        model = CostModel.load(args.cost_model)
        profile = profile_on(ADMISSION_PROFILES[args.profile], args.device_sharing, model.device_overlap)
        carried = known_carried(model.name, args.device_sharing)
        admission = {**profile.admission, **({"carried": carried} if carried else {}), **admission}
        read = profile.call_seconds_read
    jobs = [
        Run(
            case,
            seed,
            admission,
            policy,
            read,
            args.cost_model,
            args.device_sharing,
            tuple(sorted(json.loads(args.streaming).items())),
            pace,
        )
        for case, seeds in CASES
        for seed in seeds[: args.seeds]
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_case, jobs))
    by_case: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_case[
            (row["sample_rate"], row["llm_per_row"], row["streams"], row["within_s"], row["preamble_ids"])
        ].append(row)
    print(
        "| Hz | ms/row | offered | within s | preamble ids | admitted (per seed) | underrunning streams | p95 first audio ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (rate, per_row, streams, within, preamble), case_rows in by_case.items():
        print(
            f"| {rate} | {per_row} | {streams} | {within:g} | {preamble} | "
            f"{', '.join(str(r['admitted']) for r in case_rows)} | "
            f"{', '.join(str(r['underrunning_streams']) for r in case_rows)} | "
            f"{', '.join(str(r['ttfa_ms_p95']) for r in case_rows)} |"
        )
    total = sum(r["underrunning_streams"] for r in rows)
    print(f"underrunning streams in all {len(rows)} runs: {total}")
    if args.json is not None:
        write_results(
            args.json,
            {
                "cost_model": repo_path(args.cost_model),
                "host_ms": HOST_MS,
                "profile": args.profile,
                "admission": admission,
                "policy": policy,
                "call_seconds_read": read,
                "device_sharing": args.device_sharing,
                "streaming": json.loads(args.streaming),
                "engine_pace": None if pace is None else asdict(pace),
                "rows": rows,
            },
        )
    return 0
