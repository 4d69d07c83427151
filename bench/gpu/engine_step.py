"""The engine step's device time as vLLM builds it, the closest this image allows: Qwen2 at Spark-TTS's released
config (random weights, bf16), its decode step compiled by TorchInductor (fused norms, rotary and activations, as
vLLM compiles its model) and captured as one CUDA graph over a static KV cache, at 1 to 256 rows; beside the same
step uncompiled (`llm_step.StaticStep`, the 3 ms + per-row figure of the cost models), in the same run.

Why: in the simulator the engine step's fixed part decides the 16 kHz bursts (`python -m bench sim engine_step`,
docs/benchmarks.md), and the lent image has no vLLM. vLLM's step adds host work between steps (scheduling, sampling's
bookkeeping) that this does not measure, and kernels of its own (paged attention, fused add-norm). What this gives
is the device time of the same network with fewer, fused kernels: a least-squares `fixed + per_row` for both
variants, the cost model's `llm_step_ms` for each.

    python3 bench/gpu/engine_step.py [--batches 1,8,32,64,128,256] [--out DIR]
    python3 bench/gpu/engine_step.py --quick --device cpu --out /tmp/x    # the plumbing (tiny model, no graph)

Each variant's rows are written to `<out>/engine-step.json` as soon as they are measured (`"partial": true` until
the end; the smallest and largest batch first, so two rows give a fit), so a call cut short keeps them; a variant
whose compile or capture fails is recorded with the error and the run goes on. The compiled variant recompiles for
each batch (static shapes, as vLLM captures one graph per batch size): about 20-60 s each on a GPU (34 s on this
CPU at the released config), in each row's `setup_s`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gpu.llm_step import (  # noqa: E402
    PROMPT_TOKENS,
    QUICK,
    RELEASED,
    StaticStep,
    _sync,
    build,
    timed_steps,
)

BATCHES = (1, 8, 32, 64, 128, 256)
STEPS = 48  # timed steps per batch, after the capture's warm-up
VARIANTS = ("graph", "compiled")


@torch.inference_mode()
def time_step(
    model: PreTrainedModel,
    batch: int,
    device: str,
    prompt: int,
    steps: int,
    compiled: bool,
) -> dict[str, Any]:
    """One variant at one batch: build the stepper (compile and capture: `setup_s`), then time `steps` steps."""
    graph = device.startswith("cuda")
    started = time.perf_counter()
    stepper = StaticStep(model, batch, device, prompt, prompt + steps + 8, graph, compile_step=compiled)
    if not graph:
        stepper.advance()  # compiles on the first call when there is no capture to warm up for
    _sync(device)
    setup_s = time.perf_counter() - started
    times = timed_steps(stepper, device, steps)
    del stepper
    return {
        "batch": batch,
        "step_ms_p50": round(times[len(times) // 2] * 1000, 4),
        "step_ms_p90": round(times[int(len(times) * 0.9)] * 1000, 4),
        "setup_s": round(setup_s, 2),
    }


def measure_order(batches: tuple[int, ...]) -> list[int]:
    """The smallest and the largest batch first, so a call cut short still has a fit, then the rest ascending."""
    ends = sorted({min(batches), max(batches)})
    return ends + sorted(set(batches) - set(ends))


def fit(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Least squares `step_ms_p50 = fixed + per_row x batch` over the measured rows (the cost model's `llm_step_ms`)."""
    points = [(r["batch"], r["step_ms_p50"]) for r in rows if "step_ms_p50" in r]
    if len(points) < 2:
        return None
    x = np.array([b for b, _ in points], dtype=float)
    y = np.array([ms for _, ms in points], dtype=float)
    per_row, fixed = np.polyfit(x, y, 1)
    worst = float(np.max(np.abs((fixed + per_row * x) - y) / y))
    return {
        "fixed": round(float(fixed), 4),
        "per_row": round(float(per_row), 6),
        "worst_error": round(worst, 3),
    }


def write(out: Path, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine-step.json").write_text(json.dumps(result, indent=1) + "\n")


def run(
    device: str,
    quick: bool,
    batches: tuple[int, ...],
    out: Path,
    steps: int = STEPS,
    variants: tuple[str, ...] = VARIANTS,
) -> dict[str, Any]:
    # One compile per batch of one step function (static shapes): keep Dynamo from falling back to eager past its
    # default limit of recompiles.
    dynamo = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), 4 * len(batches)))
    config = QUICK if quick else RELEASED
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    prompt = 32 if quick else PROMPT_TOKENS
    model = build(config, device, dtype)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "config": "quick" if quick else "released",
        "dtype": str(dtype).removeprefix("torch."),
        "prompt_tokens": prompt,
        "steps": steps,
        "partial": True,
        "variants": {},
    }
    for variant in variants:
        rows: list[dict[str, Any]] = []
        result["variants"][variant] = {"rows": rows}
        for batch in measure_order(batches):
            try:
                row = time_step(model, batch, device, prompt, steps, compiled=variant == "compiled")
            except Exception as exc:  # noqa: BLE001 - record why and go on: the other rows still count
                rows.append({"batch": batch, "error": f"{type(exc).__name__}: {exc}"[:400]})
                print(f"  {variant} B={batch}: {rows[-1]['error']}", flush=True)
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                break
            rows.append(row)
            print(
                f"  {variant:<8} B={batch:<3} step p50 {row['step_ms_p50']:7.3f} ms  p90 {row['step_ms_p90']:7.3f}"
                f"  (setup {row['setup_s']:.1f} s)",
                flush=True,
            )
            result["variants"][variant]["fit"] = fit(rows)
            write(out, result)
    result["partial"] = False
    write(out, result)
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    variants = result["variants"]
    print(f"\nEngine step, {result['config']} config, {result['dtype']} on {result['device']}: p50 ms")
    print("| batch | " + " | ".join(variants) + " | compiled / graph |")
    print("|---|" + "---|" * len(variants) + "---|")
    by_batch: dict[int, dict[str, float]] = {}
    for name, v in variants.items():
        for r in v["rows"]:
            if "step_ms_p50" in r:
                by_batch.setdefault(r["batch"], {})[name] = r["step_ms_p50"]
    for batch, cells in sorted(by_batch.items()):
        ratio = (
            f"{cells['compiled'] / cells['graph']:.2f}" if "compiled" in cells and "graph" in cells else ""
        )
        print(f"| {batch} | " + " | ".join(str(cells.get(n, "")) for n in variants) + f" | {ratio} |")
    for name, v in variants.items():
        f = v.get("fit")
        if f:
            print(f"{name}: {f['fixed']} ms + {f['per_row']} ms per row (worst error {f['worst_error']:.0%})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="a tiny model: the plumbing, not a figure")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--variants", default=",".join(VARIANTS), help="graph, compiled or both")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "acceptance")
    args = p.parse_args(argv)
    batches = tuple(int(b) for b in args.batches.split(","))
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}: choose from {VARIANTS}")
    run(args.device, args.quick, batches, args.out, args.steps, variants)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
