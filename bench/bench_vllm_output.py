"""What vLLM's output path costs the API process per generated id: real vLLM (CPU), the demo checkpoint, the
service's own `VLLMEngine`, nothing else in the process.

    .venv-vllm/bin/python bench/bench_vllm_output.py [--streams 4,16,48] [--intervals 4] [--ids 400]
        [--variants shipped,vllm-logger,no-stats] [--out bench/results/vllm_output/vllm_output.json]

The host-path bench (`bench/bench_host_path.py`) serves the product with a paced stand-in engine, whose per-delta
bookkeeping is far cheaper than `AsyncLLM`'s: vLLM's engine core sends every step's ids for every running request
to the API process, which decodes them, updates per-request state and stats and wakes each request's consumer. This
bench measures that part alone. `--streams` requests at a time generate up to `--ids` ids each (greedy; the demo
model may stop earlier) through `VLLMEngine.stream`; the consumer only counts. The figure is this process's CPU
(every thread, `/proc/self/task/*/schedstat`) over the level, less its idle CPU per wall second, per id, per delta and
per engine step; the engine core runs in its own process and is not counted. A fit CPU = a x steps + b x ids over
the levels separates the per-step part (the output socket, the handler's wake-up) from the per-id part.

Variants, each on its own engine (started fresh, ~15-35 s on CPU):
- `shipped`: the service's stat logger, which vLLM takes for its one Prometheus logger (core/llm/vllm_stats.py), and
  no per-request iteration stats (preemptions come from the scheduler's stats);
- `request-stats`: the same logger with vLLM's per-request iteration stats kept (vLLM then updates every request's
  stats per id, for histograms /metrics never shows);
- `vllm-logger`: a plain per-engine logger, so vLLM adds its own PrometheusStatLogger beside it (its metrics go to a
  registry /metrics never serves);
- `no-stats`: `TTS_VLLM_ENGINE_STATS=false` (no logger, vLLM keeps no stats).
On a shared 2-core machine the engine core competes for the cores; read ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Before vLLM is imported (its engine core process reads them): as the vLLM test tier runs it on CPU.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VARIANTS = ("shipped", "request-stats", "vllm-logger", "no-stats")
PROMPT = list(range(1000, 1100))  # 100 plain ids inside the demo vocabulary: only the output path is measured


def process_cpu_s() -> float:
    total = 0
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def start_engine(llm_dir: Path, variant: str, interval: int, max_seqs: int) -> Any:
    from core.llm.vllm_engine import VLLMEngine
    from shared.settings import Settings

    settings = Settings(
        engine="vllm",
        llm_dtype="auto",
        max_model_len=2048,
        max_num_seqs=max_seqs,
        llm_stream_interval=interval,
        vllm_engine_stats=variant != "no-stats",
    )
    import core.llm.vllm_stats as stats

    if variant == "request-stats":
        skip = stats.skip_request_stats
        stats.skip_request_stats = lambda async_llm: False  # vLLM keeps updating every request's stats per id
        try:
            return VLLMEngine.from_settings(llm_dir, settings)
        finally:
            stats.skip_request_stats = skip
    if variant != "vllm-logger":
        return VLLMEngine.from_settings(llm_dir, settings)

    shipped = stats._service_logger
    stats._service_logger = stats._per_engine_logger  # vLLM then adds its own Prometheus logger beside it
    try:
        return VLLMEngine.from_settings(llm_dir, settings)
    finally:
        stats._service_logger = shipped


async def level(engine: Any, streams: int, ids: int, tag: str) -> dict[str, Any]:
    from core.llm import SamplingConfig

    sampling = SamplingConfig(temperature=0.0, top_k=0, top_p=1.0, max_tokens=ids)

    async def one(i: int) -> tuple[int, int]:
        deltas = count = 0
        async for delta in engine.stream(PROMPT, sampling, f"{tag}-{i}"):
            deltas += 1
            count += len(delta)
        return deltas, count

    idle_started, idle_cpu = time.monotonic(), process_cpu_s()
    await asyncio.sleep(2.0)
    idle = (process_cpu_s() - idle_cpu) / (time.monotonic() - idle_started)
    started, cpu = time.monotonic(), process_cpu_s()
    results = await asyncio.gather(*(one(i) for i in range(streams)))
    wall, cpu = time.monotonic() - started, process_cpu_s() - cpu
    deltas = sum(d for d, _ in results)
    total = sum(n for _, n in results)
    net = max(0.0, cpu - idle * wall)
    steps = max(n for _, n in results)  # every request steps once per engine step until it ends
    return {
        "streams": streams,
        "wall_s": round(wall, 2),
        "ids": total,
        "deltas": deltas,
        "steps": steps,
        "cpu_s": round(cpu, 4),
        "idle_cpu_per_wall_s": round(idle, 5),
        "net_cpu_s": round(net, 4),
        "us_per_id": round(1e6 * net / max(1, total), 2),
        "us_per_delta": round(1e6 * net / max(1, deltas), 2),
        "ids_per_s": round(total / wall, 1),
    }


def fit(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Least squares of net CPU = a x engine steps + b x ids over the levels."""
    import numpy as np

    if len(rows) < 2:
        return None
    a = np.array([[r["steps"], r["ids"]] for r in rows], dtype=float)
    y = np.array([r["net_cpu_s"] for r in rows])
    (per_step, per_id), *_ = np.linalg.lstsq(a, y, rcond=None)
    return {"us_per_step": round(1e6 * float(per_step), 1), "us_per_id": round(1e6 * float(per_id), 2)}


async def run_variant(
    llm_dir: Path, variant: str, interval: int, streams: list[int], ids: int
) -> dict[str, Any]:
    started = time.monotonic()
    engine = await asyncio.to_thread(start_engine, llm_dir, variant, interval, max(streams))
    try:
        await level(engine, 4, 32, f"{variant}-{interval}-warm")
        rows = [await level(engine, n, ids, f"{variant}-{interval}-{n}") for n in streams]
        loggers = getattr(engine.async_llm, "logger_manager", None)
        names = [type(x).__name__ for x in loggers.stat_loggers] if loggers is not None else []
        request_stats = engine.request_stats
    finally:
        await engine.shutdown()
    return {
        "variant": variant,
        "stream_interval": interval,
        "stat_loggers": names,
        "request_stats": request_stats,
        "engine_start_and_run_s": round(time.monotonic() - started, 1),
        "levels": rows,
        "fit": fit(rows),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="4,16,48", help="requests at a time, one level each")
    p.add_argument(
        "--intervals", default="4", help="stream_interval values (each a fresh engine per variant)"
    )
    p.add_argument("--ids", type=int, default=400, help="ids each request may generate")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "vllm_output" / "vllm_output.json"
    )
    args = p.parse_args()
    variants = args.variants.split(",")
    if set(variants) - set(VARIANTS):
        p.error(f"variants are {', '.join(VARIANTS)}")
    streams = [int(s) for s in args.streams.split(",")]
    from core.demo.checkpoint import build_demo_checkpoint

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = build_demo_checkpoint(Path(tmp) / "demo", seed=0) / "LLM"
        for interval in (int(i) for i in args.intervals.split(",")):
            for variant in variants:
                results.append(asyncio.run(run_variant(llm_dir, variant, interval, streams, args.ids)))
    print(
        "| variant | interval | streams | ids | deltas | API-process CPU s | us per id | us per delta | ids/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for row in r["levels"]:
            print(
                f"| {r['variant']} | {r['stream_interval']} | {row['streams']} | {row['ids']} | {row['deltas']} | "
                f"{row['net_cpu_s']:.3f} | {row['us_per_id']:.1f} | {row['us_per_delta']:.1f} | {row['ids_per_s']:.0f} |"
            )
    for r in results:
        print(
            f"{r['variant']} (interval {r['stream_interval']}): fit {r['fit']}; loggers {r['stat_loggers']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "load_average": os.getloadavg()}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
