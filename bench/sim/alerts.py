"""What the capacity alerts read at steady load: `python -m bench sim alerts [--json OUT]`.

`deploy/prometheus/alerts.yml` warns on the codec scheduler's busy seconds per second
(`rate(veena3_tts_codec_scheduler_busy_seconds_total[5m])`) and on admission's refusals
(`veena3_tts_admission_refusals_total`). This runs the simulator (the real scheduler and admission on a virtual clock,
H100 tf32 cost model, host 1.5 ms per audio second) at steady loads: arrivals spread evenly over `--arrive-s` (90 s)
at a rate that offers a given number of concurrent 10 s streams, from half of what the device holds to three times
it, and reads both counters over the steady middle (`--window`, 30-80 s), as a 5-minute `rate()` would. Prints one
row per case and writes the JSON; the alert in alerts.yml is chosen from it (docs/benchmarks.md, "What the capacity
alerts read").
"""

from __future__ import annotations

import argparse
import asyncio
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sim.run import SimConfig, Simulation
from bench.standin.cost_model import CostModel

ROOT = Path(__file__).resolve().parents[2]
COST_MODEL = ROOT / "bench" / "cost_models" / "h100-tf32.json"
AUDIO_S = 10.0
# (sample rate, LLM ms per row, streams the device holds with admission: docs/benchmarks.md's simulator table)
SETTINGS = ((16_000, 0.02, 190), (16_000, 0.056, 135), (48_000, 0.01, 128))
LOADS = (0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 3.0)  # offered concurrency over what the device holds


@dataclass(frozen=True)
class Case:
    sample_rate: int
    per_row: float
    holds: int
    load: float
    arrive_s: float
    window: tuple[float, float]
    seed: int = 0

    @property
    def streams(self) -> int:  # offered concurrency = arrival rate x a stream's ~10 s
        return round(self.load * self.holds * self.arrive_s / AUDIO_S)


def run_case(case: Case) -> dict[str, Any]:
    from bench.sim.virtual_loop import run_virtual

    model = CostModel.load(COST_MODEL).with_overrides(llm_per_row=case.per_row, host_ms=1.5)
    cfg = SimConfig(
        model,
        case.streams,
        sample_rate=case.sample_rate,
        arrive_within_s=case.arrive_s,
        seed=case.seed,
        audio_seconds=AUDIO_S,
    )
    start, end = case.window

    async def main() -> dict[str, Any]:
        sim = Simulation(cfg)
        marks: dict[str, tuple[float, float, int, int]] = {}

        async def read_at(name: str, at: float) -> None:  # what a scrape at `at` would read
            await asyncio.sleep(max(0.0, sim.started + at - sim.loop.time()))
            refused = sum(sim.admission.refused.values()) - sim.admission.refused.get("ramp", 0)
            marks[name] = (
                sim.loop.time(),
                sim.scheduler.stats.busy_seconds,
                refused,
                sim.scheduler.active_streams,
            )

        readers = [asyncio.ensure_future(read_at("start", start)), asyncio.ensure_future(read_at("end", end))]
        report = await sim.run()
        await asyncio.gather(*readers)
        (t0, busy0, refused0, open0), (t1, busy1, refused1, open1) = marks["start"], marks["end"]
        seconds = t1 - t0
        return {
            "sample_rate": case.sample_rate,
            "llm_per_row": case.per_row,
            "holds": case.holds,
            "load": case.load,
            "streams_offered": case.streams,
            "streams_admitted": report["streams_admitted"],
            "underrunning_streams": report["underruns_prebuffer_100ms"],
            "open_streams": [open0, open1],
            "busy_rate": round((busy1 - busy0) / seconds, 3),
            "refusals_per_s": round((refused1 - refused0) / seconds, 3),
            "refused_by": report["refused_by"],
        }

    return run_virtual(main)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arrive-s", type=float, default=90.0)
    p.add_argument("--window", default="30,80", help="steady window, seconds from the start")
    p.add_argument("--seeds", default="0")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    window = tuple(float(x) for x in args.window.split(","))
    cases = [
        Case(rate, per_row, holds, load, args.arrive_s, window, int(seed))  # type: ignore[arg-type]
        for rate, per_row, holds in SETTINGS
        for load in LOADS
        for seed in args.seeds.split(",")
    ]
    columns = (
        "sample_rate",
        "llm_per_row",
        "load",
        "streams_offered",
        "streams_admitted",
        "underrunning_streams",
        "busy_rate",
        "refusals_per_s",
    )
    print(" | ".join(columns))
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(run_case, cases):
            rows.append(row)
            print(" | ".join(str(row[c]) for c in columns), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "cost_model": str(COST_MODEL.relative_to(ROOT)),
                    "host_ms": 1.5,
                    "arrive_s": args.arrive_s,
                    "window_s": window,
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 0
