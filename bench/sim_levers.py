"""The codec scheduler's levers, before/after in one run: `python -m bench.sim_levers [--streams 200] [--json OUT]`.

200 and 250 streams at 16 kHz, every one admitted (admission off), the H100 tf32 cost model at LLM 0.02 ms/row, host 1.5 ms per audio second,
seeds 0 and 1: how much decode device time, how many underrunning streams, for the call shapes before and after
issue 38's capacity work (docs/benchmarks.md). Prints a table, writes the JSON.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.sim.run import ADMISSION_OFF, SimConfig, simulate
from bench.standin.cost_model import CostModel
from services.codec.calls import SchedulerPolicy

ROOT = Path(__file__).resolve().parents[1]
OLD_LENGTHS = (16, 32, 48, 64, 96, 128, 192, 256)
OLD_BATCHES = (1, 2, 4, 8, 16, 32, 64)


def variants() -> dict[str, tuple[SchedulerPolicy, int]]:
    new = SchedulerPolicy(max_call_decode_tokens=2048)
    whole = replace(new, decode_reach=None)  # every window whole through the wave generator (until 2026-11-24)
    old = replace(whole, decode_buckets=OLD_LENGTHS, batch_sizes=OLD_BATCHES, max_pad_waste=0.5, pad_all_rows=False)
    return {
        "before (old buckets, waste 0.5), 40 preamble ids": (old, 40),
        "before, 1 preamble id (stored globals)": (old, 1),
        "+ max_pad_waste 0.25": (replace(old, max_pad_waste=0.25), 1),
        "+ batch buckets 1,2,3,4,6,8,12,...": (replace(old, max_pad_waste=0.25, batch_sizes=new.batch_sizes), 1),
        "+ length buckets every 8/16/32": (replace(whole, pad_all_rows=False), 1),
        "+ the padding bound for shorter rows too": (whole, 1),
        "+ the wave generator on kept tokens +- its reach (the new default)": (new, 1),
        "new default, no batch padding (CPU-like)": (replace(new, pad_batch=False), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sim_levers", description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="200,250", help="comma list")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--json", type=Path, default=ROOT / "bench/results/simulate/levers.json")
    args = p.parse_args(argv)
    model = CostModel.load(ROOT / "bench/cost_models/h100-tf32.json").with_overrides(llm_per_row=0.02, host_ms=1.5)
    rows: list[dict[str, Any]] = []
    print("variant | streams | seed | underrunning streams | TTFA p95 ms | decode device s | codec calls | mean batch | LLM steps")
    for name, (policy, preamble) in variants().items():
        for streams, seed in ((int(n), int(s)) for n in args.streams.split(",") for s in args.seeds.split(",")):
            r = simulate(SimConfig(model, streams, seed=seed, preamble_ids=preamble, admission=ADMISSION_OFF,
                                   policy=policy))
            row = {"variant": name, "seed": seed, "streams": streams, "preamble_ids": preamble,
                   "underruns_prebuffer_100ms": r["underruns_prebuffer_100ms"], "ttfa_ms_p95": r["ttfa_ms_p95"],
                   "decode_device_s": r["gpu_busy_seconds"]["decode"], "codec_calls": r["codec_calls"],
                   "mean_decode_batch": r["mean_decode_batch"], "llm_steps": r["llm_steps"]}
            rows.append(row)
            print(" | ".join(str(row[k]) for k in ("variant", "streams", "seed", "underruns_prebuffer_100ms", "ttfa_ms_p95",
                                                  "decode_device_s", "codec_calls", "mean_decode_batch",
                                                  "llm_steps")), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
