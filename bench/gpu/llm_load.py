"""An engine's load on the device, in a process of its own: random-weight Qwen2 at Spark-TTS's released config
stepping back to back, as vLLM's engine core steps beside the API process while it has requests.
(Each step is the same decode step at one position, replayed: the cost of a step, not its tokens.)

The service steps pace the LLM off the device, so their codec calls have the GPU to themselves. On a served GPU the
engine core is another process (another CUDA context): the GPU time-slices between it and the codec. This stand-in
(no checkpoint: random weights from the released config, `llm_step.StaticStep`'s CUDA graph at `--batch` rows) runs
until `--seconds` pass or it is sent SIGTERM (`--gap-ms`: the GPU left alone that long after each step, as vLLM's
engine leaves it while its host schedules the next step), then writes each second's steps and step times (wall ms
around the replay and its sync) to `--out`, so a probe can read how the codec's calls stretch its steps and the
reverse.

    python3 bench/gpu/llm_load.py --batch 64 --seconds 120 --out /tmp/llm-load.json
    python3 bench/gpu/llm_load.py --batch 64 --gap-ms 1.5 --seconds 120 --out /tmp/llm-load.json   # host gaps
    python3 bench/gpu/llm_load.py --quick --device cpu --seconds 1 --out /tmp/llm-load.json   # the plumbing, eager
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu.llm_step import PROMPT_TOKENS, QUICK, RELEASED, StaticStep, build  # noqa: E402


def per_second(times: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """(start s, step ms) pairs binned by whole seconds from the start: steps, p50 and max step ms."""
    bins: dict[int, list[float]] = {}
    for started, step_ms in times:
        bins.setdefault(int(started), []).append(step_ms)
    rows = []
    for second in sorted(bins):
        ordered = sorted(bins[second])
        rows.append(
            {
                "second": second,
                "steps": len(ordered),
                "p50_ms": round(ordered[len(ordered) // 2], 3),
                "max_ms": round(ordered[-1], 3),
            }
        )
    return rows


@torch.inference_mode()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a tiny model (the CPU plumbing check)")
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        help="host time after each step with nothing on the GPU (vLLM's scheduling)",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    model = build(QUICK if args.quick else RELEASED, args.device, torch.bfloat16 if cuda else torch.float32)
    prompt = 32 if args.quick else PROMPT_TOKENS
    stepper = StaticStep(model, args.batch, args.device, prompt, prompt + 64, graph=cuda)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    times: list[tuple[float, float]] = []
    started = time.perf_counter()
    print(f"llm load: B={args.batch} stepping on {args.device}", flush=True)
    while not stop["now"] and time.perf_counter() - started < args.seconds:
        t0 = time.perf_counter()
        stepper.repeat()
        if cuda:
            torch.cuda.synchronize()
        times.append((t0 - started, (time.perf_counter() - t0) * 1000))
        if args.gap_ms > 0:
            time.sleep(args.gap_ms / 1000.0)
    ms = sorted(t for _, t in times)
    result = {
        "batch": args.batch,
        "gap_ms": args.gap_ms,
        "device": args.device,
        "steps": len(times),
        "seconds": round(time.perf_counter() - started, 2),
        "step_ms_p50": round(ms[len(ms) // 2], 3) if ms else None,
        "per_second": per_second(times),
    }
    args.out.write_text(json.dumps(result))
    print(f"llm load: {len(times)} steps, p50 {result['step_ms_p50']} ms", flush=True)


if __name__ == "__main__":
    main()
