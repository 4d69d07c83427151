"""The engine core in the serving process: each step's Python first, on that process's GIL after whatever holds it,
then the rest of the step on the device; the step's cost is split, not grown."""

from __future__ import annotations

import asyncio

import pytest

from bench.sim.inprocess_engine import EngineOnServingGIL
from bench.sim.overlapped_device import OverlappedDeviceTimeline
from bench.sim.virtual_loop import run_virtual
from bench.standin.cost_model import DEFAULT_ENGINE_HOST_MS, CostModel, EngineStep, Linear

MS = 1e-3
BASE = {
    "llm_step_ms": {"fixed": 1.0, "per_row": 0.01},
    "llm_prefill_ms": {"fixed": 0.0, "per_token": 0.0},
    "decode_ms": {"fixed": 1.0, "per_token": 0.01},
    "sr_ms": {"fixed": 1.0, "per_input_sample": 0.0},
}
MODEL = CostModel.from_dict({**BASE, "engine_host_ms": {"fixed": 0.5, "per_row": 0.01}})


def _step(gil_free_at: float) -> tuple[float, list[tuple[float, float]], float]:
    """One 5 ms step of 50 rows (host 0.5 + 0.5 ms) while the GIL is held until `gil_free_at`: its end, the GIL's
    holds and the device's busy seconds."""
    holds: list[tuple[float, float]] = []
    free = [gil_free_at]

    def hold(cost: float) -> float:
        start = max(asyncio.get_running_loop().time(), free[0])
        free[0] = start + cost
        holds.append((start, start + cost))
        return start + cost

    device = OverlappedDeviceTimeline(overlap=0.5)
    engine = EngineOnServingGIL(device, MODEL, hold)

    async def main() -> float:
        return await engine.use("llm", 5 * MS, detail=EngineStep(rows=50, newcomers=0, prefill_seconds=0.0))

    end = run_virtual(main)
    return end, holds, device.busy_seconds["llm"]


def test_a_step_runs_its_python_on_the_gil_then_the_rest_on_the_device() -> None:
    end, holds, busy = _step(0.0)
    assert MODEL.engine_host == Linear(0.5, 0.01)
    assert holds == [(0.0, pytest.approx(1 * MS))]
    assert end == pytest.approx(5 * MS)  # the step's cost, split
    assert busy == pytest.approx(4 * MS)


def test_a_step_waits_for_the_gil_the_api_path_holds() -> None:
    end, holds, _ = _step(3 * MS)
    assert holds == [(pytest.approx(3 * MS), pytest.approx(4 * MS))]
    assert end == pytest.approx(8 * MS)


def test_the_default_host_part_is_a_stated_estimate() -> None:
    model = CostModel.from_dict(BASE)
    assert model.engine_host == Linear(*DEFAULT_ENGINE_HOST_MS)
