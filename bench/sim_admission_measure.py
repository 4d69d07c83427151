"""What admission's codec cost should count, before/after in one run: `python -m bench.sim_admission_measure
[--variants shipped,own,own-0.45,own-0.4] [--json OUT]`.

Admission's codec cost per stream reads the scheduler's call seconds, from a call's dispatch to its end on the
shared device: its own work plus the engine step it queued behind (what a GPU shared with the engine process
measures; `CodecScheduler._account`). The variants here count only the call's own modelled device seconds instead
(the stand-in knows them; a GPU does not), with the shipped caps or with caps rescaled for the smaller measure.
The brief's load matrix, seeds 0-2, H100 tf32 cost model, host 1.5 ms per audio second: 64 / 250 / 600 streams at
16 kHz and 200 at 48 kHz (0.02 ms per LLM row), 250 at 16 kHz at 0.005 and 0.01. Prints admitted, underrunning
streams, TTFA p95 and exact first chunks per run; writes the JSON (docs/benchmarks.md, "What admission measures").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.sim.run import SimConfig, Simulation
from bench.sim.virtual_loop import run_virtual
from bench.standin.cost_model import CostModel
from services.codec.admission import Admission
from services.codec.calls import SchedulerPolicy
from services.codec.scheduler import CodecScheduler

ROOT = Path(__file__).resolve().parents[1]
# name -> (count own seconds, admission settings)
VARIANTS: dict[str, tuple[bool, dict[str, float]]] = {
    "shipped": (False, {}),
    "own": (True, {}),
    "own-0.45": (True, {"short_schedule_share": 0.45, "max_codec_share": 0.65}),
    "own-0.4": (True, {"short_schedule_share": 0.4, "max_codec_share": 0.6}),
}
LOADS = [(0.02, 16_000, 64), (0.02, 16_000, 250), (0.02, 16_000, 600), (0.02, 48_000, 200), (0.005, 16_000, 250),
         (0.01, 16_000, 250)]


class OwnSecondsScheduler(CodecScheduler):
    """Counts each call's own modelled device seconds as its cost (deadline misses still use the call's real end)."""

    def _account(self, call: Any, chosen: Any, started: float, ended: float) -> None:
        own = self.runner.model.call_seconds(call)
        busy, by_kind = self.stats.busy_seconds, self.stats.seconds_by_kind[call.kind]
        super()._account(call, chosen, started, ended)
        self.stats.busy_seconds = busy + own
        self.stats.seconds_by_kind[call.kind] = by_kind + own
        end, _ = self._recent_calls.pop()
        self._recent_calls.append((end, own))


class OwnSecondsSimulation(Simulation):
    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.scheduler = OwnSecondsScheduler(self.runner, config.policy, clock=self.loop.time)
        self.admission = Admission(self.scheduler, clock=self.loop.time, generating=lambda: self.engine.active,
                                   **config.admission)


def run_one(variant: str, per_row: float, sample_rate: int, streams: int, seed: int) -> dict[str, Any]:
    own, admission = VARIANTS[variant]
    model = CostModel.load(ROOT / "bench" / "cost_models" / "h100-tf32.json").with_overrides(
        host_ms=1.5, llm_per_row=per_row)
    cfg = SimConfig(model, streams, sample_rate=sample_rate, seed=seed, admission=dict(admission),
                    policy=SchedulerPolicy(max_call_decode_tokens=2048))

    async def main() -> dict[str, Any]:
        return await (OwnSecondsSimulation if own else Simulation)(cfg).run()

    r = run_virtual(main)
    return {"variant": variant, "llm_per_row": per_row, "sample_rate": sample_rate, "streams": streams, "seed": seed,
            "admitted": r["streams_admitted"], "underrunning": r["underruns_prebuffer_100ms"],
            "ttfa_ms_p95": r["ttfa_ms_p95"], "exact_first_chunks": r["long_first_chunks"], "refused_by": r["refused_by"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sim_admission_measure", description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    print("variant | llm ms/row | rate | streams | seed | admitted | underrunning | TTFA p95 ms | exact first chunks")
    for variant in args.variants.split(","):
        for per_row, rate, streams in LOADS:
            for seed in (int(s) for s in args.seeds.split(",")):
                row = run_one(variant, per_row, rate, streams, seed)
                rows.append(row)
                print(f"{variant} | {per_row} | {rate} | {streams} | {seed} | {row['admitted']} | "
                      f"{row['underrunning']} | {row['ttfa_ms_p95']} | {row['exact_first_chunks']}", flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
