"""The overlapped device (one CUDA context, two streams): each lane first come first served, the two lanes at
1 / (2 - overlap) of their speed while both have a call in progress; overlap 0 is the sliced device, 1 two devices."""

from __future__ import annotations

import asyncio

import pytest

from bench.sim.overlapped_device import OverlappedDeviceTimeline
from bench.sim.run import device_for
from bench.sim.sliced_device import SlicedDeviceTimeline
from bench.sim.virtual_loop import run_virtual
from bench.standin.cost_model import DEFAULT_DEVICE_OVERLAP, CostModel, DeviceTimeline

MS = 1e-3
MODEL = {
    "llm_step_ms": {"fixed": 1.0, "per_row": 0.01},
    "llm_prefill_ms": {"fixed": 0.0, "per_token": 0.0},
    "decode_ms": {"fixed": 1.0, "per_token": 0.01},
    "sr_ms": {"fixed": 1.0, "per_input_sample": 0.0},
}


def _ends(device: SlicedDeviceTimeline, calls: list[tuple[float, str, float]]) -> list[float]:
    async def one(start: float, kind: str, seconds: float) -> float:
        await asyncio.sleep(start)
        return await device.use(kind, seconds)

    async def main() -> list[float]:
        return list(await asyncio.gather(*(one(*c) for c in calls)))

    return run_virtual(main)


@pytest.mark.parametrize("overlap", [0.0, 0.5, 1.0])
def test_two_calls_together_end_after_the_longer_plus_the_shorter_not_hidden(overlap: float) -> None:
    # a 4 ms step beside a 10 ms call: the pair ends after 10 + (1 - overlap) x 4 ms
    device = OverlappedDeviceTimeline(overlap=overlap)
    ends = _ends(device, [(0.0, "llm", 4 * MS), (0.0, "sr", 10 * MS)])
    assert max(ends) == pytest.approx((10 + (1 - overlap) * 4) * MS)
    assert ends[0] == pytest.approx(
        4 * (2 - overlap) * MS
    )  # the step at 1 / (2 - overlap) of its speed throughout
    assert device.total_busy == pytest.approx(14 * MS)  # each call's own seconds, overlap or not


def test_no_overlap_is_the_sliced_device() -> None:
    calls = [(0.0, "decode", 10 * MS), (2 * MS, "llm", 3 * MS), (3 * MS, "sr", 2 * MS)]
    assert _ends(OverlappedDeviceTimeline(overlap=0.0), calls) == pytest.approx(
        _ends(SlicedDeviceTimeline(), calls)
    )


def test_a_lane_stays_first_come_first_served_and_a_call_alone_runs_at_full_speed() -> None:
    ends = _ends(OverlappedDeviceTimeline(overlap=0.5), [(0.0, "decode", 5 * MS), (1 * MS, "sr", 5 * MS)])
    assert ends == [pytest.approx(5 * MS), pytest.approx(10 * MS)]


def test_the_overlap_is_the_cost_models_and_is_checked() -> None:
    model = CostModel.from_dict(MODEL)
    assert model.device_overlap == DEFAULT_DEVICE_OVERLAP
    assert CostModel.from_dict({**MODEL, "device_overlap": 0.3}).device_overlap == 0.3
    assert model.with_overrides(device_overlap=0.8).device_overlap == 0.8
    device = device_for("overlapped", model.with_overrides(device_overlap=0.8))
    assert isinstance(device, OverlappedDeviceTimeline) and device.overlap == 0.8
    assert type(device_for("sliced", model)) is SlicedDeviceTimeline
    assert type(device_for("serial", model)) is DeviceTimeline
    for bad in (-0.1, 1.5, "half"):
        with pytest.raises(ValueError, match="device_overlap"):
            CostModel.from_dict({**MODEL, "device_overlap": bad})
    with pytest.raises(ValueError, match="overlap"):
        OverlappedDeviceTimeline(overlap=2.0)
