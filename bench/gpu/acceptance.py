"""GPU acceptance: one command that settles every GPU claim, in resumable steps that each fit one 10-minute call.

    python3 bench/gpu/acceptance.py [--steps parity,throughput,llm,concurrency,scheduler,apbwe_variants,service,...]
                                    [--device cuda]
                                    [--quick] [--fixtures DIR] [--results DIR] [--out DIR] [--force]
                                    [--levels 1,8,...] [--schedules balanced,lowest] [--budget-s 400]
    python3 bench/gpu/acceptance.py --one-call    # concurrency, scheduler, apbwe_variants, service, service48: <= 9 min

Steps (bench/gpu/README.md has the exact command for each on a lent machine):
  parity      codec/SR/encoder fixtures on the device, released-size device vs CPU, streamed == offline
  throughput  batched BiCodec decode and AP-BWE (fp32/tf32/bf16), the cloning encoder, the ctc aligner
  llm         Qwen2 at the released config (random weights), transformers, bf16: decode-step latency at B 1-64
  concurrency the engine step (a Qwen2 CUDA graph) at 100-250 rows beside the codec's graph replays, in one process
              and in two, each alone and together: the device's overlap (bench/gpu/concurrency.py)
  scheduler   the codec scheduler with the real models: padded/batched/graph windows against unpadded and offline
              for every latency schedule, graph capture time and memory per bucket (bench/gpu/scheduler_step.py)
  apbwe_variants  AP-BWE at fp32, TF32, fp16 and fp16 fused, timed at the 72 shapes the service captures, with
              each one's quality against fp32 (bench/gpu/apbwe_variants.py)
  service     the real app at 16 kHz, 1-256 streams, the LLM paced per level at the llm step's CUDA-graph rate,
              released-size codec: TTFA, underruns, each call shape's device time beside its isolated cost
  service48   the same at 48 kHz (BiCodec + AP-BWE) at 1, 32, 64 and 200 streams (bench/gpu/service_load.py)
  service48-tf32  the same with AP-BWE's graphs in TF32 (TTS_CODEC_SR_PRECISION=tf32; the default is fp16)
Each step writes `<results>/<step>.json` (default bench/results/acceptance/; git ignores it: carry it to a GPU);
a later call skips a step whose result is there (unless --force, or the result is from an older kit: `SCHEMA`), so
a step cut off by the call limit is simply run again; `--levels` reruns those levels of a service step (no --force
needed) and merges them into its earlier result. Every call then rewrites `acceptance.json` and `acceptance.md` (all results so far) under --out
(default: $OUT when set, else the results folder). The service's own CUDA numerics are applied first, as the
runtime applies them at start.

On a CPU (`--quick --device cpu`, run by the test suite) every step runs on tiny shapes: that checks the plumbing;
the figures say nothing about a GPU. A CPU run never touches GPU results: its default results folder is
bench/results/acceptance-cpu/, and it refuses a results folder (or an --out folder) holding a GPU run's files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gpu import (  # noqa: E402
    apbwe_variants,
    concurrency,
    llm_step,
    one_call,
    parity,
    report,
    scheduler_step,
    service_load,
    throughput,
)

STEPS = (
    "parity",
    "throughput",
    "llm",
    "concurrency",
    "scheduler",
    "apbwe_variants",
    "service",
    "service48",
    "service48-tf32",
)
SERVICE_RATES = {"service": 16000, "service48": 48000, "service48-tf32": 48000}
# A service step's settings beside the product's defaults: service48-tf32 serves AP-BWE from TF32 graphs (the cost
# model's AP-BWE slope is TF32's; the service's default is fp16: docs/decisions/apbwe-precision.md).
SERVICE_SETTINGS = {"service48-tf32": {"TTS_CODEC_SR_PRECISION": "tf32"}}
SCHEMA = {"service": 2, "service48": 2, "service48-tf32": 2}  # a step result older than this is rerun
CPU_NOTICE = "CPU: figures say nothing about a GPU"
DEFAULT_RESULTS = ROOT / "bench" / "results" / "acceptance"
DEFAULT_CPU_RESULTS = (
    ROOT / "bench" / "results" / "acceptance-cpu"
)  # ignored by git: a CPU run's plumbing check


def default_fixtures() -> Path | None:
    """The steering fixtures beside the checkout (here), or the copy the README's command carries (`.fixtures/`)."""
    for candidate in (ROOT / ".fixtures", ROOT / ".." / "shared" / "fixtures"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def apply_service_numerics(device: str) -> dict[str, Any]:
    """The CUDA numerics the service sets at start (TF32 off for the codec's and SR's convolutions and matmuls)."""
    from core.numerics import apply_model_numerics

    return {**apply_model_numerics(), "device": device}


def machine(device: str) -> dict[str, Any]:
    cuda = device.startswith("cuda")
    return {
        "device": torch.cuda.get_device_name()
        if cuda
        else f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda if cuda else None,
    }


def run_step(
    name: str, args: argparse.Namespace, results: dict[str, Any], write: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """One step's result; a service step hands each level's rows to `write` as soon as they are measured."""
    budget_s = one_call.budget_left(name, time.perf_counter() - args.started) if args.one_call else None
    if name == "parity":
        return parity.run(args.device, args.quick, args.fixtures)
    if name == "throughput":
        return throughput.run(args.device, args.quick)
    if name == "llm":
        return llm_step.run(args.device, args.quick)
    if name == "apbwe_variants":
        return apbwe_variants.run(args.device, args.quick, budget_s=budget_s)
    if name == "concurrency":
        return concurrency.run(
            args.device, args.quick, phase_s=concurrency.PHASE_S if budget_s is None else 1.0
        )
    if name in SERVICE_RATES:
        earlier = _result(results, name)
        # A result cut short (a call that ended mid-step) or with levels skipped for time: only those levels again.
        levels = args.levels or one_call.missing_levels(earlier)
        result = service_load.run(
            args.device,
            args.quick,
            SERVICE_RATES[name],
            llm=_result(results, "llm"),
            scheduler=_result(results, "scheduler"),
            throughput=_result(results, "throughput"),
            levels=levels,
            schedules=args.schedules,
            budget_s=budget_s if budget_s is not None else args.budget_s,
            settings=SERVICE_SETTINGS.get(name),
            on_rows=lambda so_far: write(service_load.merge_levels(earlier, so_far) if levels else so_far),
        )
        return service_load.merge_levels(earlier, result) if levels else result
    if name == "scheduler":
        capture_s = one_call.CAPTURE_S if args.one_call else args.capture_budget_s
        return scheduler_step.run(args.device, args.quick, capture_budget_s=capture_s)
    raise ValueError(name)


def _result(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    return results[name]["result"] if name in results else None


def load_results(folder: Path) -> dict[str, Any]:
    found = {}
    for name in STEPS:
        path = folder / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def stale(name: str, step: dict[str, Any]) -> bool:
    """A result written by an older kit (its report lacks what this kit measures), a service step that failed
    (e.g. its server was not ready in time), or one with levels still to measure (cut short, or skipped for time):
    the step runs again (a service step: only the levels it lacks)."""
    result = step.get("result") or {}
    failed = name in SERVICE_RATES and "error" in result
    unfinished = name in SERVICE_RATES and bool(one_call.missing_levels(result))
    return failed or unfinished or step.get("schema", 1) < SCHEMA.get(name, 1)


def gpu_files(folder: Path) -> list[str]:
    """Files in `folder` that a GPU run wrote (a step's or the combined page's machine is not a CPU)."""
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        steps = (
            data.get("steps", {path.stem: data} if "machine" in data else {})
            if isinstance(data, dict)
            else {}
        )
        if any(
            not str(s.get("machine", {}).get("device", "cpu")).startswith("cpu")
            for s in steps.values()
            if isinstance(s, dict)
        ):
            found.append(path.name)
    return found


def _ints(value: str) -> list[int]:
    return [int(x) for x in value.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, from {', '.join(STEPS)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (the CPU plumbing check)")
    parser.add_argument("--fixtures", type=Path, default=default_fixtures())
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"default {DEFAULT_RESULTS.relative_to(ROOT)} (GPU), "
        f"{DEFAULT_CPU_RESULTS.relative_to(ROOT)} (CPU)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    )
    parser.add_argument("--force", action="store_true", help="run steps that already have a result")
    parser.add_argument(
        "--levels",
        type=_ints,
        default=None,
        help="service steps: these stream counts only, merged into the step's earlier result",
    )
    parser.add_argument(
        "--schedules",
        type=lambda v: [x for x in v.split(",") if x],
        default=None,
        help="service steps: latency schedules (default balanced,lowest)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=service_load.BUDGET_S,
        help="service steps: skip a level whose expected time passes this many seconds of the step",
    )
    parser.add_argument(
        "--capture-budget-s",
        type=float,
        default=0.0,
        help="scheduler step: stop capturing codec graphs after this many seconds (0: all of them; "
        "a first call that ran out of time can rerun with, e.g., 240)",
    )
    parser.add_argument(
        "--one-call",
        action="store_true",
        help="concurrency, scheduler, service and service48 within one device call of at most 9 minutes "
        "(bench/gpu/one_call.py: each step's budget, both graph captures bounded)",
    )
    args = parser.parse_args(argv)
    args.started = time.perf_counter()
    if args.one_call:
        args.steps = ",".join(one_call.STEP_S)
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; accepted: {', '.join(STEPS)}")
    cpu = not args.device.startswith("cuda")
    if args.results is None:
        args.results = DEFAULT_CPU_RESULTS if cpu else DEFAULT_RESULTS
    if cpu:
        for folder in {args.results, *([args.out] if args.out else [])}:
            held = gpu_files(folder)
            if held:  # a CPU run would mix its steps into a GPU run's and rewrite its page with a CPU notice
                parser.error(
                    f"{folder} holds GPU results ({', '.join(held)}); a CPU run never touches them: "
                    "give it another --results/--out folder"
                )
        print(CPU_NOTICE)
    args.results.mkdir(parents=True, exist_ok=True)
    numerics = apply_service_numerics(args.device)
    results = load_results(args.results)
    for name in STEPS:
        if name not in steps:
            continue
        rerun = args.force or stale(name, results.get(name, {})) or (args.levels and name in SERVICE_RATES)
        # --one-call resumes its own cut call; a result from another device is measured again.
        other_device = (
            results.get(name, {}).get("machine", {}).get("device") != machine(args.device)["device"]
        )
        if args.one_call and name in results and other_device:
            rerun = True
            del results[name]  # nothing of it is merged into this device's result
        if name in results and not rerun:
            print(
                f"== {name}: result from an earlier call kept ({args.results.name}/{name}.json; --force reruns)"
            )
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()

        def write(result: dict[str, Any], name: str = name, started: float = started) -> None:
            results[name] = {
                "machine": machine(args.device),
                "quick": args.quick,
                "numerics": numerics,
                "schema": SCHEMA.get(name, 1),
                "wall_s": round(time.perf_counter() - started, 1),
                "result": result,
            }
            path = args.results / f"{name}.json"
            path.with_suffix(".tmp").write_text(json.dumps(results[name], indent=1, default=str) + "\n")
            path.with_suffix(".tmp").replace(path)  # a call cut mid-write keeps the previous level's file

        write(run_step(name, args, results, write))
        print(f"== {name} done in {results[name]['wall_s']:.0f} s", flush=True)
    combined = {
        "steps": results,
        "missing": [s for s in STEPS if s not in results],
        "cpu_notice": CPU_NOTICE if cpu else None,
    }
    markdown = report.markdown(combined)
    for folder in {args.results, *([args.out] if args.out else [])}:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "acceptance.json").write_text(json.dumps(combined, indent=1, default=str) + "\n")
        (folder / "acceptance.md").write_text(markdown)
    print()
    print(markdown)
    if cpu:
        print(CPU_NOTICE)
    failed = [
        r["check"]
        for step in ("parity", "scheduler")
        for r in results.get(step, {}).get("result", {}).get("rows", [])
        if r.get("ok") is False
    ]
    if failed:
        print(f"PARITY FAILED: {', '.join(failed)}")
        return 1
    # A service step whose server never got ready (its cause is printed above) fails the call, so a harness or CI
    # that runs the kit sees it.
    broken = [s for s in steps if s in SERVICE_RATES and "error" in results.get(s, {}).get("result", {})]
    if broken:
        print(f"SERVICE STEPS FAILED: {', '.join(broken)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
