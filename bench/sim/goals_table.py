"""Where the many-streams goals stand: `python -m bench sim goals [--json OUT] [--quick]`.

Every arrival the goals name (bench/sim/goals.py: 250 at 16 kHz and 200 at 48 kHz over 30 s; 64 at 16 kHz within
2 s, first audio p95 <= 300 ms; 250 at 16 kHz and 200 at 48 kHz within 5 s, p95 <= 800 ms; every stream admitted and
none running dry), at the H200's measured codec costs and vLLM's published engine step, host 1.4 ms per audio second,
seeds 0-2. The 48 kHz arrivals run twice: AP-BWE in TF32 (`TTS_CODEC_SR_PRECISION=tf32`) and in fp32 (the default).
Each runs on a device that runs one call at a time, on one shared by time slices (as a GPU shares itself between
vLLM's engine-core process and the codec's) and on one CUDA context whose two streams overlap (vLLM's engine core in the
serving process; the table the deployment's layout gives says so), with the engine stepping every request and paced
(`TTS_LLM_PACE_LEAD_IDS=100`), under admission off (every stream admitted on the exact first chunk: what the modelled
device carries), the service's admission as it ships (`served`) and the `bursts` profile. A cell meets its goal when
every seed does. A second table gives, with every stream admitted, what the streams need of the device at the most
of them playing at once (the engine at real time, the codec at the run's own rate; bench/sim/breakdown.py). A
prediction from cost models, not a measurement; `--engine-step` puts a GPU's measured engine step
(bench/gpu/engine_step.py's `engine-step.json`) in place of the published one, in every row.
"""

from __future__ import annotations

import argparse
import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.harness import repo_path, write_results
from bench.sim.breakdown import NEED_COLUMNS, need_cells
from bench.sim.cut import summary_cell
from bench.sim.device_labels import deployed_sharing, device_title
from bench.sim.goals import GOAL_BURSTS, MEASURED_HOST_MS, STEADY_ARRIVALS, Arrivals, arrivals_named, goal_met
from bench.sim.options import add_engine_step_option, engine_step
from bench.sim.run import simulate_arrivals
from bench.sim.sliced_device import DEVICE_SHARINGS, DeviceSharing
from bench.standin.cost_model import CostModel, Linear
from core.llm.engine_pace import EnginePace

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "bench" / "cost_models"
MEASURED = MODELS_DIR / "h200-graphs-vllm-step-sr-tf32.json"  # AP-BWE in TF32
SR_FP32 = MODELS_DIR / "h200-graphs-vllm-step.json"  # the same with AP-BWE in fp32, as served by default
ARRIVALS = (*STEADY_ARRIVALS, *GOAL_BURSTS)
ADMISSIONS = ("off", "served", "bursts")
PACED = EnginePace(lead_ids=100)  # TTS_LLM_PACE_LEAD_IDS=100 at the default rate
SEEDS = (0, 1, 2)

# (arrivals' name, AP-BWE precision, admission, device sharing, paced, seed, the TF32 cost model's path, a measured
# engine step in place of the models' and where it came from, the overlapped device's overlap)
Job = tuple[str, str, str, DeviceSharing, bool, int, str, tuple[Linear, str] | None, float]


def precisions(arrivals: Arrivals) -> tuple[str, ...]:
    """AP-BWE's precisions a row runs at: both at 48 kHz, none to choose at 16 kHz."""
    return ("tf32", "fp32") if arrivals.sample_rate == 48_000 else ("-",)


def run_one(job: Job) -> dict[str, Any]:
    name, precision, admission, sharing, paced, seed, measured, step, overlap = job
    path = Path(measured) if precision != "fp32" else SR_FP32
    model = CostModel.load(path).with_overrides(host_ms=MEASURED_HOST_MS, device_overlap=overlap)
    if step is not None:
        model = model.with_engine_step(*step)
    report = simulate_arrivals(
        model,
        arrivals_named(name, ARRIVALS),
        admission,
        seed,
        device_sharing=sharing,
        engine_pace=PACED if paced else None,
    )
    return {
        "arrivals": name,
        "sr_precision": precision,
        "admission": admission,
        "device_sharing": sharing,
        "paced": paced,
        "seed": seed,
        "cost_model": model.name,
        "admitted": report["streams_admitted"],
        "underran": report["underruns_prebuffer_100ms"],
        "ttfa_ms_p95": report["ttfa_ms_p95"],
        "refused_by": report["refused_by"],
        # device seconds a second the admitted streams need at the most of them playing at once (breakdown.py)
        "playing_need": report["breakdown"]["playing_need"],
    }


def _cell(runs: list[dict[str, Any]], arrivals: Arrivals) -> str:
    text = summary_cell(sorted(runs, key=lambda r: r["seed"]))
    return f"**met**: {text}" if goal_met(arrivals, runs) else text


def verdicts(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per cell (arrivals, precision, device, pace, admission): whether every seed met the goal."""
    cells: dict[tuple[str, str, str, bool, str], list[dict[str, Any]]] = {}
    for r in runs:
        key = (r["arrivals"], r["sr_precision"], r["device_sharing"], r["paced"], r["admission"])
        cells.setdefault(key, []).append(r)
    return [
        {
            "arrivals": name,
            "sr_precision": precision,
            "device_sharing": sharing,
            "paced": paced,
            "admission": admission,
            "met": goal_met(arrivals_named(name, ARRIVALS), group),
        }
        for (name, precision, sharing, paced, admission), group in cells.items()
    ]


def print_tables(runs: list[dict[str, Any]], overlap: float) -> None:
    columns = [(a, p) for a in ADMISSIONS for p in (False, True)]
    for sharing in DEVICE_SHARINGS:
        mine = [r for r in runs if r["device_sharing"] == sharing]
        if not mine:
            continue
        print(
            f"\n{device_title(sharing, overlap)}. Admitted per seed, first audio p95 ms, streams that underran at a "
            f"100 ms prebuffer per seed; host {MEASURED_HOST_MS} ms per audio second, vLLM's step"
        )
        print(
            "| arrivals | AP-BWE | " + " | ".join(f"{a}{', paced' if p else ''}" for a, p in columns) + " |"
        )
        print("|---|---|" + "---|" * len(columns))
        for arrivals in ARRIVALS:
            for precision in precisions(arrivals):
                cells = []
                for admission, paced in columns:
                    group = [
                        r
                        for r in mine
                        if (r["arrivals"], r["sr_precision"], r["admission"], r["paced"])
                        == (arrivals.name, precision, admission, paced)
                    ]
                    cells.append(_cell(group, arrivals) if group else "")
                if any(cells):
                    print(f"| {arrivals.name} | {precision} | " + " | ".join(cells) + " |")


def print_need_tables(runs: list[dict[str, Any]], overlap: float) -> None:
    """With every stream admitted (the engine stepping every request): what they need of the device at the most of
    them playing at once, over seeds."""
    for sharing in DEVICE_SHARINGS:
        mine = [
            r for r in runs if (r["device_sharing"], r["admission"], r["paced"]) == (sharing, "off", False)
        ]
        if not mine:
            continue
        print(
            f"\n{device_title(sharing, overlap)}, every stream admitted: device seconds a second at the most playing "
            "at once"
        )
        print("| arrivals | AP-BWE | " + " | ".join(NEED_COLUMNS) + " |")
        print("|---|---|" + "---|" * len(NEED_COLUMNS))
        for arrivals in ARRIVALS:
            for precision in precisions(arrivals):
                needs = [
                    r["playing_need"]
                    for r in mine
                    if (r["arrivals"], r["sr_precision"]) == (arrivals.name, precision)
                ]
                if needs:
                    print(f"| {arrivals.name} | {precision} | " + " | ".join(need_cells(needs)) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "simulate" / "goals.json")
    p.add_argument(
        "--cost-model",
        type=Path,
        default=MEASURED,
        help="the costs with AP-BWE in TF32; fp32 rows read h200-graphs-vllm-step.json",
    )
    add_engine_step_option(p)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="seed 0, the bursts, the deployment's device")
    p.add_argument(
        "--device-overlap",
        type=float,
        default=None,
        help="the overlapped device's overlap in place of the model's",
    )
    p.add_argument(
        "--devices",
        default=",".join(DEVICE_SHARINGS),
        help="the device models to run, comma-separated (default: all three)",
    )
    args = p.parse_args(argv)
    step = engine_step(args.engine_step)
    overlap = args.device_overlap
    if overlap is None:
        overlap = CostModel.load(args.cost_model).device_overlap
    devices = tuple(d for d in DEVICE_SHARINGS if d in args.devices.split(","))
    if not devices or set(args.devices.split(",")) - set(DEVICE_SHARINGS):
        p.error(f"--devices: comma-separated, from {', '.join(DEVICE_SHARINGS)}")
    arrivals = GOAL_BURSTS if args.quick else ARRIVALS
    jobs: list[Job] = [
        (a.name, precision, admission, sharing, paced, seed, str(args.cost_model), step, overlap)
        for a in arrivals
        for precision in precisions(a)
        for admission, sharing, paced, seed in itertools.product(
            ADMISSIONS,
            (deployed_sharing(),) if args.quick else devices,
            (False, True),
            SEEDS[:1] if args.quick else SEEDS,
        )
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run_one, jobs))
    print_tables(runs, overlap)
    print_need_tables(runs, overlap)
    write_results(
        args.json,
        {
            "cost_model": repo_path(args.cost_model),
            "cost_model_sr_fp32": repo_path(SR_FP32),
            "engine_step_ms": None if step is None else {"fixed": step[0].fixed, "per_row": step[0].per_unit},
            "engine_step_from": None if step is None else step[1],
            "host_ms_per_audio_second": MEASURED_HOST_MS,
            "device_overlap": overlap,
            "deployed_device_sharing": deployed_sharing(),
            "engine_pace": asdict(PACED),
            "verdicts": verdicts(runs),
            "runs": runs,
        },
    )
    return 0
