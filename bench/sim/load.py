"""Simulate many live streams on one modelled device: the real `CodecScheduler` and `Admission` on a virtual clock.

    python -m bench sim load --cost-model bench/cost_models/h100-tf32.json --streams 64 --sample-rate 16000 \\
        [--arrive-within 10] [--llm-per-row 0.02] [--host-ms 1.5] [--host-ms-per-request 4.5] [--api-processes 1] [--background-jobs 1] --json OUT

Each stream arrives uniformly within `--arrive-within` seconds, asks admission, generates about 10 s of speech on
a modelled engine and has its decode (and, at 48 kHz, AP-BWE) windows run by the scheduler on a device whose calls
cost what the cost model says (bench/sim/run.py says what is modelled). Prints a table
and writes the JSON report (at least streams_requested/admitted/refused, ttfa_ms_p50/p95,
underruns_prebuffer_100ms, gpu_busy_ratio, mean_decode_batch). `--sweep-per-row a,b,c` runs every level at each
LLM slope instead (the table of streams held against the LLM's per-row cost in docs/benchmarks.md).
A run of 600 streams takes a few seconds of CPU.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.sim.breakdown import print_breakdown
from bench.sim.run import ADMISSION_OFF, SimConfig, served_streaming, simulate
from bench.sim.sliced_device import DEVICE_SHARINGS
from bench.standin.cost_model import CostModel
from services.device.background import BackgroundPolicy
from services.device.calls import CALL_SECONDS_READS, SchedulerPolicy

ROOT = Path(__file__).resolve().parents[2]

COLUMNS = (
    "llm_per_row",
    "sample_rate",
    "streams_requested",
    "streams_admitted",
    "streams_refused",
    "ttfa_ms_p50",
    "ttfa_ms_p95",
    "underruns_prebuffer_100ms",
    "missed_deadlines",
    "gpu_busy_ratio",
    "mean_decode_batch",
    "host_busy_ratio_max",
)
BACKGROUND_COLUMNS = ("background_audio_s", "background_audio_per_device_s", "background_audio_per_s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cost-model", required=True, type=Path, help="JSON cost model (bench/cost_models/)")
    p.add_argument("--streams", required=True, help="streams to offer; a comma list runs several levels")
    p.add_argument("--sample-rate", type=int, choices=(16000, 48000), default=16000)
    p.add_argument(
        "--arrive-within", type=float, default=10.0, help="arrivals uniform over this many seconds"
    )
    p.add_argument("--audio-seconds", type=float, default=10.0, help="speech per stream (+-20%%)")
    p.add_argument(
        "--preamble-ids",
        type=int,
        default=1,
        help="ids before the first semantic token: 1 for voices with stored globals (global_tokens and "
        "cloned voices, built-in style voices once pinned); 40 when the model emits the 32 globals first",
    )
    p.add_argument("--llm-per-row", type=float, default=None, help="override llm_step_ms.per_row")
    p.add_argument("--sweep-per-row", default=None, help="comma list of llm_step_ms.per_row values to sweep")
    p.add_argument("--host-ms", type=float, default=None, help="override host_ms.per_audio_second")
    p.add_argument(
        "--host-ms-per-request",
        type=float,
        default=None,
        help="override host_ms.per_request (0: not modelled)",
    )
    p.add_argument("--api-processes", type=int, default=1)
    p.add_argument(
        "--stream-interval",
        type=int,
        default=None,
        help="ids per engine delta after the first (vLLM's stream_interval); default: the service's",
    )
    p.add_argument(
        "--max-call-decode-tokens",
        type=int,
        default=SchedulerPolicy().max_call_decode_tokens,
        help="bound on one BiCodec call (rows x bucket): a long call stalls every LLM step behind it; "
        "default: the service's own",
    )
    p.add_argument(
        "--no-admission", action="store_true", help="admit every stream (to see what overload does)"
    )
    p.add_argument(
        "--no-sr-lead",
        action="store_true",
        help="48 kHz: no lead window (core.sr_planner); the first "
        "AP-BWE window waits for its real right context",
    )
    p.add_argument(
        "--admission", default="{}", help="JSON keyword settings for Admission (default: the service's)"
    )
    p.add_argument(
        "--device-sharing",
        choices=DEVICE_SHARINGS,
        default="serial",
        help="how the engine and the codec share the device: one call at a time, or by time slices (about half "
        "each while both have work, as an H100 shared itself with an engine's process)",
    )
    p.add_argument(
        "--call-seconds-read",
        choices=CALL_SECONDS_READS,
        default="dispatch_to_end",
        help="what admission reads as a codec call's seconds: from dispatch to end, the wait behind the "
        "engine's step included (the service's measure), or the call's own device time",
    )
    p.add_argument(
        "--latency",
        choices=("balanced", "lowest", "exact"),
        default="balanced",
        help="the first-chunk schedule each stream asks for (admission may still give a newcomer `exact` under "
        "load, as the service does)",
    )
    p.add_argument(
        "--streaming",
        default="{}",
        help="JSON StreamingConfig fields over the service's chunk schedule (TTS_STREAM_*), e.g. "
        "'{\"growth\": 1.1}'",
    )
    p.add_argument(
        "--policy",
        default="{}",
        help="JSON keyword settings for SchedulerPolicy beside the call bound "
        "(default: the service's; '{\"decode_reach\": null}': whole windows through the wave generator)",
    )
    p.add_argument(
        "--background-jobs",
        type=int,
        default=0,
        help="long-form jobs beside the live load (background work in the codec scheduler); --streams 0: jobs alone",
    )
    p.add_argument("--background-audio", type=float, default=600.0, help="speech per background job (s)")
    p.add_argument(
        "--background-share",
        type=float,
        default=BackgroundPolicy().share,
        help="most of the device background calls take while live streams are open (TTS_BACKGROUND_SHARE)",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="after each level, what binds: device seconds by kind of work, rows per call, host seconds, "
        "admission's measures against the device's (bench/sim/breakdown.py)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the report(s) here")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    base = CostModel.load(args.cost_model).with_overrides(
        host_ms=args.host_ms, host_ms_per_request=args.host_ms_per_request
    )
    slopes = [float(s) for s in args.sweep_per_row.split(",")] if args.sweep_per_row else [args.llm_per_row]
    admission = ADMISSION_OFF if args.no_admission else json.loads(args.admission)
    policy = json.loads(args.policy)
    streaming = served_streaming(**json.loads(args.streaming))
    reports = []
    for slope in slopes:
        model = base.with_overrides(llm_per_row=slope)
        for streams in (int(s) for s in str(args.streams).split(",")):
            cfg = SimConfig(
                model,
                streams,
                sample_rate=args.sample_rate,
                arrive_within_s=args.arrive_within,
                seed=args.seed,
                audio_seconds=args.audio_seconds,
                preamble_ids=args.preamble_ids,
                api_processes=args.api_processes,
                stream_interval=args.stream_interval,
                admission=admission,
                latency=args.latency,
                streaming=streaming,
                sr_lead=not args.no_sr_lead,
                policy=SchedulerPolicy(max_call_decode_tokens=args.max_call_decode_tokens, **policy),
                background_jobs=args.background_jobs,
                background_audio_s=args.background_audio,
                background=BackgroundPolicy(share=args.background_share),
                call_seconds_read=args.call_seconds_read,
                device_sharing=args.device_sharing,
            )
            report = simulate(cfg)
            report["llm_per_row"] = model.llm_step.per_unit
            report["latency"] = args.latency
            report["streaming"] = asdict(streaming)
            reports.append(report)
            print_row(report, header=len(reports) == 1 or args.breakdown, background=args.background_jobs > 0)
            if args.breakdown:
                print_breakdown(report)
    return reports


def print_row(report: dict[str, Any], *, header: bool, background: bool = False) -> None:
    columns = COLUMNS + BACKGROUND_COLUMNS if background else COLUMNS
    if header:
        print(" | ".join(columns))
    print(" | ".join(str(report.get(c)) for c in columns), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reports = run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2) + "\n")
    return 0
