"""Acceptance step `concurrency`: the engine and the codec on one GPU at once, in both layouts the service runs.

Where vLLM's engine core runs decides how the GPU shares itself (services/device/device_layout.py): in the serving
process (`TTS_LLM_ENGINE_LAYOUT=inprocess`) the engine's steps and the codec's calls are two CUDA streams of one
context and may run side by side; in a process of its own (`process`) they are two contexts the GPU time-slices. This
step measures both: at 100, 200 and 250 rows the engine's step alone, the codec's call alone, and each while the other
runs, and from them the overlap the simulator's overlapped device takes (`device_overlap`, bench/sim/
overlapped_device.py): while both run each goes at 1 / (2 - overlap) of its speed, so overlap = 2 - together / alone
(0 for two contexts time-sliced, 1 for no slowdown at all), one figure from each side.

The engine is this kit's stand-in for vLLM's decode step, since the lent image has no vLLM and its wheels are far
past what a call carries: Qwen2 at Spark-TTS's released config in bf16, one decode step over a static KV cache
replayed as one CUDA graph (`llm_step.StaticStep`, engine_step.py's `graph` variant). vLLM's host work between steps
is not in it. The codec is the service's own graph bodies (services/device/graphs.py) at a burst's shapes: a decode
call of 8 rows x 64 tokens and an AP-BWE call of 8 rows x 0.2 s, TF32 (`TTS_CODEC_SR_PRECISION=tf32`), replayed in
turn, each ending in a sync of its own stream as the service's device thread does. In the in-process layout the
engine steps on one thread and stream and the codec calls on another (the runner's own stream); in the process
layout the engine steps in a child process. Each phase runs `PHASE_S`; medians.

    python3 bench/gpu/concurrency.py [--batches 100,200,250] [--out DIR]
    python3 bench/gpu/concurrency.py --quick --device cpu --out /tmp/x     # the plumbing (tiny models, no graphs)

Rows are written to `<out>/concurrency.json` as they are measured (`"partial": true` until the end).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gpu.llm_step import PROMPT_TOKENS, QUICK, RELEASED, StaticStep, build  # noqa: E402

BATCHES = (100, 200, 250)
PHASE_S = 1.5  # each measured phase: hundreds of steps and calls on a GPU
WARMUP_CALLS = 2  # untimed before each phase (a first call's one-time work)
LAYOUTS = ("inprocess", "process")
DECODE_SHAPE = (64, 8)  # tokens x rows: a burst's decode call
SR_SHAPE = (3200, 8)  # 16 kHz input samples x rows: 0.2 s, on AP-BWE's 80-sample grid


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.current_stream().synchronize()


def _paced(fn: Callable[[], None], device: str, seconds: float, stop: threading.Event | None = None) -> float:
    """Run `fn` back to back for `seconds` (or until `stop`), each call synced on this thread's stream: median ms."""
    for _ in range(WARMUP_CALLS):
        fn()
    _sync(device)
    times: list[float] = []
    ends = time.perf_counter() + seconds
    while time.perf_counter() < ends and not (stop is not None and stop.is_set()):
        began = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - began)
    return round(1000 * statistics.median(times), 4) if times else float("nan")


class Engine:
    """The engine's decode step at `batch` rows, stepping for ever at one cost (`StaticStep.repeat`)."""

    def __init__(self, model: Any, batch: int, device: str, prompt: int) -> None:
        self.step = StaticStep(model, batch, device, prompt, prompt + 64, graph=device.startswith("cuda"))

    @torch.inference_mode()
    def __call__(self) -> None:
        self.step.repeat()


class Codec:
    """One decode and one AP-BWE call at a burst's shapes, in turn: captured graphs on CUDA, eager bodies on a CPU."""

    def __init__(self, device: str, quick: bool) -> None:
        from bench.gpu.bench_gpu import apbwe_config, bicodec_config, build_bicodec, build_sr
        from core.apbwe import RELEASED_CONFIG as APBWE_RELEASED
        from core.demo.random_bicodec import DEMO_CONFIG
        from services.device.graphs import GraphKey, graph_body

        cuda = device.startswith("cuda")
        if cuda:  # decode graphs are TF32 as served; AP-BWE at TF32 as the measured cost model
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        config = DEMO_CONFIG if quick else bicodec_config()[0]
        sr_config = (
            dict(APBWE_RELEASED, ConvNeXt_channels=32, ConvNeXt_layers=2) if quick else apbwe_config()[0]
        )
        decoder, sr = build_bicodec(config, device), build_sr(sr_config, device)
        length, rows = DECODE_SHAPE if not quick else (16, 2)
        sr_length, sr_rows = SR_SHAPE if not quick else (800, 2)
        self.bodies = [
            graph_body(decoder, sr, GraphKey("decode", length, rows), torch.device(device))[1],
            graph_body(decoder, sr, GraphKey("sr", sr_length, sr_rows), torch.device(device))[1],
        ]
        self.calls: list[Callable[[], Any]] = []
        with torch.inference_mode():
            for body in self.bodies:
                if not cuda:
                    self.calls.append(body)
                    continue
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    body()  # warm-up outside the capture
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    body()
                self.calls.append(graph.replay)
        self._turn = 0

    @torch.inference_mode()
    def __call__(self) -> None:
        self.calls[self._turn % len(self.calls)]()
        self._turn += 1


def _on_own_stream(device: str) -> None:
    """This thread's calls on a CUDA stream of its own, as the service's codec device thread (runner.py)."""
    if device.startswith("cuda"):
        torch.cuda.set_stream(torch.cuda.Stream())


def together(
    engine: Callable[[], None], codec: Callable[[], None], device: str, seconds: float
) -> tuple[float, float]:
    """The engine stepping on one thread and stream and the codec calling on another, at once: their medians."""
    found: dict[str, float] = {}
    if device.startswith("cuda"):
        torch.cuda.synchronize()  # what built them (on this thread's stream) ends before the threads' streams start

    def run(name: str, fn: Callable[[], None]) -> None:
        _on_own_stream(device)
        found[name] = _paced(fn, device, seconds)

    threads = [threading.Thread(target=run, args=(n, f)) for n, f in (("engine", engine), ("codec", codec))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return found["engine"], found["codec"]


def overlap(alone: float, beside: float) -> float:
    """The overlapped device's overlap that explains a call taking `beside` ms beside the other lane, `alone` ms alone."""
    return round(2.0 - beside / alone, 3)


def _child(conn: Any, device: str, quick: bool) -> None:
    """The process layout's engine: a process (and CUDA context) of its own, driven over `conn`."""
    _on_own_stream(device)
    model = build(
        QUICK if quick else RELEASED, device, torch.bfloat16 if device.startswith("cuda") else torch.float32
    )
    engine: Engine | None = None
    conn.send("ready")
    while True:
        command, value = conn.recv()
        if command == "batch":
            engine = None
            engine = Engine(model, value, device, 32 if quick else PROMPT_TOKENS)
            conn.send("ready")
        elif command == "run":
            assert engine is not None
            conn.send(_paced(engine, device, value))
        else:
            return


def write(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "concurrency.json").write_text(json.dumps(result, indent=1) + "\n")


def run(
    device: str,
    quick: bool,
    batches: tuple[int, ...] = BATCHES,
    out: Path | None = None,
    phase_s: float = PHASE_S,
) -> dict[str, Any]:
    cuda = device.startswith("cuda")
    batches = (2, 4) if quick and batches == BATCHES else batches
    spawn = multiprocessing.get_context("spawn")
    parent, child_end = spawn.Pipe()
    child = spawn.Process(target=_child, args=(child_end, device, quick), daemon=True)
    child.start()  # builds its model while this process builds its own
    _on_own_stream(device)
    model = build(QUICK if quick else RELEASED, device, torch.bfloat16 if cuda else torch.float32)
    codec = Codec(device, quick)
    prompt = 32 if quick else PROMPT_TOKENS
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "config": "quick" if quick else "released",
        "engine": "Qwen2 decode step, one CUDA graph over a static KV cache (llm_step.StaticStep)",
        "codec": {"decode": DECODE_SHAPE, "sr": SR_SHAPE, "precision": "tf32"},
        "phase_s": phase_s,
        "partial": True,
        "layouts": {layout: {"rows": []} for layout in LAYOUTS},
    }
    try:
        if parent.recv() != "ready":
            raise RuntimeError("the engine's process did not start")
        codec_alone = _paced(codec, device, phase_s)
        for layout in LAYOUTS:
            result["layouts"][layout]["codec_alone_ms"] = codec_alone
        for batch in batches:
            engine = Engine(model, batch, device, prompt)
            alone = _paced(engine, device, phase_s)
            engine_beside, codec_beside = together(engine, codec, device, phase_s)
            del engine
            _row(result, "inprocess", batch, alone, engine_beside, codec_alone, codec_beside)
            parent.send(("batch", batch))
            parent.recv()
            parent.send(("run", phase_s))
            alone = parent.recv()
            parent.send(("run", phase_s))
            codec_beside = _paced(codec, device, phase_s)
            engine_beside = parent.recv()
            _row(result, "process", batch, alone, engine_beside, codec_alone, codec_beside)
            if out is not None:
                write(out, result)
    finally:
        parent.send(("stop", None))
        child.join(10)
        if child.is_alive():
            child.kill()
    for layout in LAYOUTS:
        rows = result["layouts"][layout]["rows"]
        sides = [r[side] for r in rows for side in ("overlap_engine", "overlap_codec")]
        result["layouts"][layout]["overlap_mean"] = round(statistics.mean(sides), 3) if sides else None
    result["device_overlap"] = result["layouts"]["inprocess"]["overlap_mean"]
    result["partial"] = False
    if out is not None:
        write(out, result)
    print_table(result)
    return result


def _row(
    result: dict[str, Any],
    layout: str,
    batch: int,
    alone: float,
    beside: float,
    codec_alone: float,
    codec_beside: float,
) -> None:
    row = {
        "batch": batch,
        "engine_alone_ms": alone,
        "engine_beside_ms": beside,
        "codec_beside_ms": codec_beside,
        "overlap_engine": overlap(alone, beside),
        "overlap_codec": overlap(codec_alone, codec_beside),
    }
    result["layouts"][layout]["rows"].append(row)
    print(
        f"  {layout:<9} B={batch:<3} engine {alone:.3f} -> {beside:.3f} ms, codec {codec_alone:.3f} -> "
        f"{codec_beside:.3f} ms, overlap {row['overlap_engine']} / {row['overlap_codec']}",
        flush=True,
    )


def table_lines(result: dict[str, Any]) -> list[str]:
    """The step's table (printed, and in the acceptance page)."""
    lines = [
        f"Engine and codec at once, {result['config']} config on {result['device']}: median ms, alone -> beside",
        "",
        "| layout | rows | engine step | codec call | overlap (engine / codec) |",
        "|---|---|---|---|---|",
    ]
    for layout, data in result["layouts"].items():
        for r in data["rows"]:
            lines.append(
                f"| {layout} | {r['batch']} | {r['engine_alone_ms']} -> {r['engine_beside_ms']} | "
                f"{data['codec_alone_ms']} -> {r['codec_beside_ms']} | {r['overlap_engine']} / {r['overlap_codec']} |"
            )
    lines += ["", f"device_overlap (in-process, mean of both sides): {result.get('device_overlap')}"]
    return lines


def print_table(result: dict[str, Any]) -> None:
    print()
    print("\n".join(table_lines(result)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny models: the plumbing, not a figure")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--phase-s", type=float, default=PHASE_S)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "acceptance")
    args = p.parse_args(argv)
    run(args.device, args.quick, tuple(int(b) for b in args.batches.split(",")), args.out, args.phase_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
