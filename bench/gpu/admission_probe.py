"""What admission's ramp costs a burst on a GPU: the service steps' burst levels (every stream of a level arrives at
once) with admission as served, admission off, and admission on with a long wait, side by side; and the same with an
engine's load on the device (`llm_load.py` in its own process, stepping Qwen2's CUDA graph back to back as vLLM's
engine core does), where the service steps pace the LLM off the device.

    python3 bench/gpu/admission_probe.py            # on a lent GPU, after the `scheduler` step; writes $OUT/probe-*.json
    python3 bench/gpu/admission_probe.py off16 off16-llm   # the cases named
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu import service_load  # noqa: E402
from bench.gpu.acceptance import DEFAULT_RESULTS, load_results  # noqa: E402


@dataclass(frozen=True)
class EngineLoad:
    """`llm_load.py` beside the server: its decode step's batch, and how long it leaves the GPU alone after each step
    (as vLLM's host scheduling does; 0: back to back)."""

    batch: int = 64
    gap_ms: float = 0.0


CASES = [
    # name, sample rate, levels, settings, the engine's load (None: the LLM paced off the device only)
    ("off16", 16000, [64, 128], {"TTS_ADMISSION": "off"}, None),
    ("off16-llm", 16000, [64, 128], {"TTS_ADMISSION": "off"}, EngineLoad()),
    ("served16-llm", 16000, [64], {}, EngineLoad()),
    ("own16-llm", 16000, [64], {"TTS_ADMISSION_PROFILE": "own_seconds"}, EngineLoad()),
    ("own16", 16000, [64], {"TTS_ADMISSION_PROFILE": "own_seconds"}, None),
    ("off48-llm-gaps", 48000, [64], {"TTS_ADMISSION": "off"}, EngineLoad(gap_ms=1.5)),
    ("off48", 48000, [64, 200], {"TTS_ADMISSION": "off"}, None),
    ("off48-llm", 48000, [64], {"TTS_ADMISSION": "off"}, EngineLoad()),
    ("served48-llm", 48000, [64], {}, EngineLoad()),
    ("served48-llm-gaps", 48000, [64], {}, EngineLoad(gap_ms=1.5)),
    # the codec's cap at the whole device instead of the served 1.2 (TTS_ADMISSION_CODEC_SHARE)
    ("served16-llm-cap1", 16000, [64], {"TTS_ADMISSION_CODEC_SHARE": "1.0"}, EngineLoad()),
    ("served48-llm-cap1", 48000, [64], {"TTS_ADMISSION_CODEC_SHARE": "1.0"}, EngineLoad()),
    ("served48-llm-gaps-cap1", 48000, [64], {"TTS_ADMISSION_CODEC_SHARE": "1.0"}, EngineLoad(gap_ms=1.5)),
    ("wait16", 16000, [64, 128], {"TTS_ADMISSION_MAX_WAIT_MS": "3000"}, None),
]
ENGINE_LOAD_S = 400.0  # the load stops when its case ends; this only bounds a load left behind


def start_engine_load(load: EngineLoad, out: Path) -> subprocess.Popen[bytes]:
    script = Path(__file__).with_name("llm_load.py")
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            "--batch",
            str(load.batch),
            "--seconds",
            str(ENGINE_LOAD_S),
            "--out",
            str(out),
        ]
        + (["--gap-ms", str(load.gap_ms)] if load.gap_ms else [])
    )


def stop_engine_load(process: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return {"error": "the engine load did not stop on SIGTERM"}
    if not out.is_file():
        return {"error": f"exit {process.returncode}, no result"}
    report = json.loads(out.read_text())
    out.unlink()  # the case's file carries it: the device tool brings back a limited number of files
    return report


def main() -> None:
    out = Path(os.environ.get("OUT", "/tmp"))
    # the kit's earlier steps: the LLM's pace, the isolated costs, capacity
    found = load_results(DEFAULT_RESULTS)
    steps = {n: found[n]["result"] for n in ("llm", "scheduler", "throughput")}
    only = set(sys.argv[1:])
    for name, rate, levels, settings, engine in CASES:
        if only and name not in only:
            continue
        print(f"== {name}: {settings}, engine load {engine or 'none'}", flush=True)
        target = out / f"probe-{name}.json"
        load_out = out / f"llm-load-{name}.json"
        load = start_engine_load(engine, load_out) if engine else None
        started = time.time()
        cells_done: list[float] = []  # seconds from the case's start at which each cell's rows were written

        def written(
            so_far: dict[str, Any],
            target: Path = target,
            cells_done: list[float] = cells_done,
            started: float = started,
        ) -> None:
            cells_done.append(round(time.time() - started, 1))
            target.write_text(json.dumps({**so_far, "cells_done_s": cells_done}, default=str))

        try:
            result = service_load.run(
                "cuda",
                False,
                rate,
                llm=steps["llm"],
                scheduler=steps["scheduler"],
                throughput=steps["throughput"],
                levels=levels,
                budget_s=110.0,
                schedules=["balanced"],
                settings=settings,
                on_rows=written,
            )
        finally:
            report = stop_engine_load(load, load_out) if load else None
        target.write_text(
            json.dumps({**result, "cells_done_s": cells_done, "engine_load": report}, default=str)
        )


if __name__ == "__main__":
    main()
