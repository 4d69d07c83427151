"""The wave generator on each window's kept tokens +- its reach, against the whole window (what the scheduler's decode
rows did before), on this machine's CPU: the same streams' windows, the same audio, less work.

One utterance of random ids per schedule (the service's `balanced` and `exact`; `lowest` with `--all`) is planned by
`DecodePlanner` as the pipeline plans it, and every window is decoded through `ModelRunner` one call at a time (the
CPU policy: no batch padding), once with `SchedulerPolicy(decode_reach=<the decoder's>)` (the service) and once with
`decode_reach=None` (whole windows). Printed per schedule: window tokens and wave-span tokens per kept token (the
scheduler's work units), the best of `--reps` wall times of the whole utterance's decode, their ratio, and the largest
difference between the two paths' audio. Random weights compute what real ones do. A CPU figure: the GPU kit's
`scheduler` step measures the prenet's share on the device (`prenet_share`), which the cost model prices.

Usage: .venv/bin/python bench/bench_wave_trim.py [--tokens 500] [--reps 3] [--released] [--all]
Prints a markdown table and writes bench/results/wave_trim/demo.json (released.json with --released).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu.bench_gpu import bicodec_config, build_bicodec  # noqa: E402
from core.demo.random_bicodec import DEMO_CONFIG  # noqa: E402
from core.streaming import DecodePlanner, PlannedWindow, StreamingConfig  # noqa: E402
from services.codec.calls import Call, SchedulerPolicy  # noqa: E402
from services.codec.runner import ModelRunner  # noqa: E402
from services.codec.windows import DecodeWindow  # noqa: E402
from shared.settings import Settings  # noqa: E402


def plan(schedule: StreamingConfig, ids: list[int], hop: int) -> list[PlannedWindow]:
    """Every window of one stream, as the pipeline plans them (deltas of 4 ids: the engine's stream interval)."""
    planner = DecodePlanner(schedule, hop=hop, codebook_size=8192)
    windows: list[PlannedWindow] = []
    for start in range(0, len(ids), 4):
        windows += planner.push(ids[start : start + 4])
    return windows + planner.finish()


def decode(runner: ModelRunner, policy: SchedulerPolicy, windows: list[DecodeWindow]) -> list[np.ndarray]:
    out = []
    for w in windows:
        units, span = policy.units("decode", w)
        assert span is not None
        out += runner.run_sync(Call("decode", (w,), None, 1, spans=(span,), margin=policy.prenet_margin))
    return out


def measure(decoder: Any, name: str, schedule: StreamingConfig, tokens: int, reps: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 8192, tokens).tolist()
    d = torch.randn(decoder.d_vector_dim, generator=torch.Generator().manual_seed(0))
    windows = [DecodeWindow(w.ids, d, w.keep_start, w.keep_end) for w in plan(schedule, ids, decoder.hop_length)]
    policies = {"whole": SchedulerPolicy(pad_batch=False, decode_reach=None),
                "trimmed": SchedulerPolicy(pad_batch=False, decode_reach=decoder.wave_reach_tokens)}
    runner = ModelRunner(decoder)
    times: dict[str, float] = {}
    audio: dict[str, np.ndarray] = {}
    try:
        for _ in range(reps):  # alternate the two, so a busy spell of the machine hits both alike
            for key, policy in policies.items():
                began = time.perf_counter()
                audio[key] = np.concatenate(decode(runner, policy, windows))
                times[key] = min(times.get(key, float("inf")), time.perf_counter() - began)
    finally:
        runner.close()
    kept = sum(w.keep_end - w.keep_start for w in windows)
    spans = [policies["trimmed"].units("decode", w)[0] for w in windows]
    return {"schedule": name, "windows": len(windows), "kept_tokens": kept,
            "window_tokens_per_kept": round(sum(w.length for w in windows) / kept, 3),
            "wave_tokens_per_kept": round(sum(spans) / kept, 3),
            "whole_s": round(times["whole"], 3), "trimmed_s": round(times["trimmed"], 3),
            "trimmed_over_whole": round(times["trimmed"] / times["whole"], 3),
            "max_abs_diff": float(np.abs(audio["trimmed"] - audio["whole"]).max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=500, help="semantic tokens per utterance (500: 10 s of speech)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--released", action="store_true", help="the released BiCodec size (slow on a CPU)")
    p.add_argument("--all", action="store_true", help="also the lowest-latency schedule")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one device thread, as the CPU policy runs each call
    config = bicodec_config()[0] if args.released else DEMO_CONFIG
    decoder = build_bicodec(config, "cpu")
    base = StreamingConfig.from_settings(Settings())
    names = ("balanced", "exact", "lowest") if args.all else ("balanced", "exact")
    rows = [measure(decoder, n, base.for_latency(n), args.tokens, args.reps) for n in names]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    out = ROOT / "bench" / "results" / "wave_trim" / ("released.json" if args.released else "demo.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"size": "released" if args.released else "demo", "machine": platform.machine(),
                               "processor": platform.processor() or "unknown", "torch": torch.__version__,
                               "reach": decoder.wave_reach_tokens, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
