"""The time-sliced device: each lane first come first served, the two lanes at half speed each while both have a call
in progress, the device's seconds kept (on the simulator's virtual clock)."""

from __future__ import annotations

import asyncio

import pytest

from bench.sim.sliced_device import SlicedDeviceTimeline
from bench.sim.virtual_loop import run_virtual

MS = 1e-3


def _ends(calls: list[tuple[float, str, float]]) -> tuple[list[float], SlicedDeviceTimeline]:
    """Each (start s, kind, seconds) submitted at its start; the ends in the same order, and the device."""
    device = SlicedDeviceTimeline()

    async def one(start: float, kind: str, seconds: float) -> float:
        await asyncio.sleep(start)
        return await device.use(kind, seconds)

    async def main() -> list[float]:
        return list(await asyncio.gather(*(one(*c) for c in calls)))

    return run_virtual(main), device


def test_a_call_alone_takes_its_own_seconds() -> None:
    ends, device = _ends([(0.0, "decode", 10 * MS)])
    assert ends == [pytest.approx(10 * MS)]
    assert device.busy_seconds["decode"] == pytest.approx(10 * MS)


def test_two_lanes_at_once_take_half_the_device_each() -> None:
    ends, device = _ends([(0.0, "llm", 10 * MS), (0.0, "decode", 10 * MS)])
    assert ends == [pytest.approx(20 * MS), pytest.approx(20 * MS)]
    assert device.total_busy == pytest.approx(20 * MS)  # the device's seconds are kept


def test_a_call_runs_at_half_speed_only_while_the_other_lane_has_work() -> None:
    # The engine's 4 ms step and a 10 ms codec call start together: the step ends at 8 ms, the call has done 4 ms
    # by then and runs its last 6 ms alone.
    ends, _ = _ends([(0.0, "llm", 4 * MS), (0.0, "sr", 10 * MS)])
    assert ends == [pytest.approx(8 * MS), pytest.approx(14 * MS)]


def test_a_lane_is_first_come_first_served() -> None:
    ends, _ = _ends([(0.0, "decode", 5 * MS), (1 * MS, "sr", 5 * MS)])
    assert ends == [pytest.approx(5 * MS), pytest.approx(10 * MS)]


def test_a_call_arriving_mid_call_slows_the_one_in_progress() -> None:
    # A 10 ms codec call alone for 2 ms, then beside a 3 ms engine step: the step ends at 2 + 6 = 8 ms with the call
    # at 2 + 3 = 5 ms done; the call's last 5 ms alone end at 13 ms.
    ends, device = _ends([(0.0, "decode", 10 * MS), (2 * MS, "llm", 3 * MS)])
    assert ends == [pytest.approx(13 * MS), pytest.approx(8 * MS)]
    assert device.total_busy == pytest.approx(13 * MS)
