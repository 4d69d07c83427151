"""CPU per AP-BWE window on the event loop: a decoded chunk's windows submitted one task each (`asyncio.gather` over
`StreamHandle.super_resolve`) against together
(`StreamHandle.super_resolve_all`, one planner wake-up and no task per window).

    PYTHONPATH=. .venv/bin/python bench/bench_sr_submit.py [--streams 64] [--chunks 200] [--rounds 3]
        [--out bench/results/host_stages/sr_submit.json]

The real `CodecScheduler` with a device that answers at once (zeros of each window's kept length, no compute), so
what is left is the submitting, planning and answering. Each stream submits `--chunks` chunks of three windows of
AP-BWE's released sizes (8,000 samples plus 880 of context each side), the streams all at once; the two ways
alternate, `--rounds` times each, and the table shows each round (process CPU time, this one thread). The 48 kHz
host-path bench (`bench_host_path.py`) sees ~3 windows per second of audio, so a saving of x us per window is ~3x us
per audio second there, below that bench's spread between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sim.windows import SR_CONTEXT  # noqa: E402
from services.device import CodecScheduler, SchedulerPolicy, SRWindow  # noqa: E402
from services.device.calls import Call, DeviceRunner  # noqa: E402
from services.pipeline.audio_output import SR_MAX_BLOCK  # noqa: E402

WINDOW_SAMPLES = SR_CONTEXT + SR_MAX_BLOCK + SR_CONTEXT  # a full block with its context each side
KEEP = (3 * SR_CONTEXT, 3 * (SR_CONTEXT + SR_MAX_BLOCK))  # 48 kHz output samples kept: the block


class InstantDevice:
    """Answers every call at once with zeros of each row's kept length (bench only: no model, no compute)."""

    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]:
        return [np.zeros(w.keep_end - w.keep_start, np.float32) for w in call.windows], 0.0


async def one_round(streams: int, chunks: int, together: bool) -> tuple[float, float]:
    """CPU microseconds per window for one round, and windows per device call (the same either way, or the ways
    would differ in batching, not in submitting)."""
    windows = [SRWindow(np.zeros(WINDOW_SAMPLES, np.float32), *KEEP) for _ in range(3)]
    device = cast(DeviceRunner, InstantDevice())  # a stand-in: the scheduler only calls run_timed here
    async with CodecScheduler(device, SchedulerPolicy()) as scheduler:
        handles = [scheduler.open_stream() for _ in range(streams)]

        async def stream(handle):  # noqa: ANN001, ANN202
            for _ in range(chunks):
                if together:
                    await handle.super_resolve_all(windows)
                else:
                    await asyncio.gather(*(handle.super_resolve(w) for w in windows))

        started = time.process_time()
        await asyncio.gather(*(stream(h) for h in handles))
        windows_total = streams * chunks * len(windows)
        return (time.process_time() - started) / windows_total * 1e6, windows_total / scheduler.stats.calls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "host_stages" / "sr_submit.json")
    args = p.parse_args()
    rows: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for together in (False, True):
            us, batch = asyncio.run(one_round(args.streams, args.chunks, together))
            rows.append(
                {
                    "round": round_,
                    "way": "together" if together else "one task each",
                    "us_per_window": us,
                    "windows_per_call": batch,
                }
            )
    print("| round | one task each: us CPU per window (windows per call) | together | ratio |")
    print("|---|---|---|---|")
    for round_ in range(args.rounds):
        each, together_row = (r for r in rows if r["round"] == round_)
        print(
            f"| {round_} | {each['us_per_window']:.1f} ({each['windows_per_call']:.1f}) "
            f"| {together_row['us_per_window']:.1f} ({together_row['windows_per_call']:.1f}) "
            f"| {together_row['us_per_window'] / each['us_per_window']:.2f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"streams": args.streams, "chunks": args.chunks, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
