"""bench/sim/engine_pace.py: an engine that holds each live request back past a line ahead of real time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.sim.engine_pace import PacedStepLoop
from bench.sim.run import ADMISSION_OFF, SimConfig, simulate
from bench.sim.virtual_loop import run_virtual
from bench.standin.cost_model import CostModel, DeviceTimeline
from core.llm.engine_pace import EnginePace

MODEL = CostModel.from_dict(
    {
        "name": "t",
        "llm_step_ms": {"fixed": 1.0, "per_row": 0.0},  # 1,000 ids a second per request, unpaced
        "llm_prefill_ms": {"fixed": 0.0, "per_token": 0.0},
        "decode_ms": {"fixed": 1.0, "per_token": 0.0},
        "sr_ms": {"fixed": 1.0, "per_input_sample": 0.0},
    }
)
ROOT = Path(__file__).resolve().parents[4]
PACE = EnginePace(lead_ids=10, rate=1.0, resume_gap_ids=5)  # the line: 10 ids, then 50 a second


class _Row:
    __slots__ = ("prompt_tokens", "generated")

    def __init__(self) -> None:
        self.prompt_tokens, self.generated = 10, 0

    def step(self) -> bool:
        self.generated += 1
        return False


def test_a_live_request_keeps_to_its_line_and_a_background_one_runs_free() -> None:
    live, job = _Row(), _Row()

    async def main() -> list[tuple[int, int, int]]:
        loop = PacedStepLoop(MODEL, DeviceTimeline(), PACE, exempt=lambda row: row is job)
        loop.add(live)
        loop.add(job)
        seen = []
        for _ in range(5):
            await asyncio.sleep(0.1)
            seen.append((live.generated, job.generated, loop.active))
        await loop.aclose()
        return seen

    seen = run_virtual(main)
    for tenth, (live_ids, job_ids, _) in enumerate(seen, start=1):
        line = PACE.line(tenth / 10)
        assert line - PACE.resume_gap_ids - 2 <= live_ids <= line  # never past its line, never far behind it
        assert job_ids >= 90 * tenth  # the job is stepped at every step: ~100 ids per 0.1 s
    assert any(active == 1 for *_, active in seen)  # held back, the live request is not counted as generating


def test_when_every_request_is_held_back_the_engine_leaves_the_device_alone() -> None:
    row = _Row()

    async def main() -> tuple[int, int]:
        loop = PacedStepLoop(MODEL, DeviceTimeline(), PACE)
        loop.add(row)
        await asyncio.sleep(1.0)
        steps = loop.steps
        await loop.aclose()
        return steps, row.generated

    steps, generated = run_virtual(main)
    assert steps == generated and generated <= PACE.line(1.0)  # ~60 steps in a second, not 1,000


def test_the_line_and_its_bounds() -> None:
    assert PACE.line(0.0) == 10 and PACE.line(2.0) == 110
    assert PACE.resumes_at(1.0, 60) == pytest.approx(1.0 + (60 + 5 - 10) / 50)
    assert PACE.faster(2.0).rate == 2.0 and PACE.faster(0.8) is PACE
    with pytest.raises(ValueError):
        EnginePace(rate=0.0)


def test_a_paced_engine_starts_a_burst_sooner_on_a_sliced_device() -> None:
    """At the H200's costs on a device shared by time slices, admission off (the goal burst of 64, seed 0): steps hold
    fewer rows (the streams far ahead wait), and the codec, sliced less, starts every stream sooner."""
    model = CostModel.load(ROOT / "bench" / "cost_models" / "h200-graphs-vllm-step-sr-tf32.json")

    def run(pace: EnginePace | None) -> dict:
        return simulate(
            SimConfig(
                model,
                64,
                arrive_within_s=2.0,
                admission=ADMISSION_OFF,
                latency="exact",
                device_sharing="sliced",
                engine_pace=pace,
            )
        )

    free, paced = run(None), run(EnginePace())
    assert paced["streams_admitted"] == free["streams_admitted"] == 64
    assert paced["underruns_prebuffer_100ms"] == 0
    assert paced["mean_llm_rows"] < free["mean_llm_rows"]
    assert paced["ttfa_ms_p95"] < free["ttfa_ms_p95"]  # 187 against 285 ms of simulated time
