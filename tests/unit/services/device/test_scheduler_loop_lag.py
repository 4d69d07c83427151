"""A miss the event loop's own stalls account for is the host's, not the device's: the scheduler counts it for the
listener (missed_deadlines) but admission's miss rule does not read it. On a simulated clock."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.device import CodecScheduler, SchedulerPolicy
from services.device.admission import Admission
from services.device.calls import Call
from services.device.loop_lag import LoopLag
from tests.codec_fakes import FakeClock, RecordingRunner, played, window


async def _never(_seconds: float) -> None:
    """The probe's sleep in these tests: stalls are fed by hand (`note`), the probe itself never wakes."""
    await asyncio.Event().wait()


class StalledLoopRunner(RecordingRunner):
    """The device takes `cost`; the loop then stalls `stall` seconds before the caller resumes (a host whose CPU
    another process holds), and the probe notes that stall."""

    def __init__(self, clock: FakeClock, lag: LoopLag, cost: float, stall: float) -> None:
        super().__init__(clock, cost)
        self.lag, self.stall = lag, stall

    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]:
        rows = await self.run(call)
        due = self.clock.now
        self.clock.now += self.stall
        self.lag.note(due, self.clock.now)
        return rows, self.cost


def _setup(cost: float, stall: float) -> tuple[CodecScheduler, FakeClock, LoopLag]:
    clock = FakeClock()
    lag = LoopLag(clock=clock, sleep=_never)
    sched = CodecScheduler(
        StalledLoopRunner(clock, lag, cost, stall), SchedulerPolicy(), clock=clock, loop_lag=lag
    )
    return sched, clock, lag


def test_stalls_below_the_floor_are_the_loop_s_own_work_and_overlaps_are_clipped() -> None:
    clock = FakeClock(0.0)
    lag = LoopLag(clock=clock, sleep=_never, min_stall_s=0.005, lookback_s=0.25, memory_s=5.0)
    lag.note(1.000, 1.002)  # 2 ms late: a busy loop, not a stall
    lag.note(2.000, 2.040)
    lag.note(2.100, 2.110)
    assert lag.stalls == 2 and lag.stalled_seconds == pytest.approx(0.050)
    assert lag.stalled(0.0, 10.0) == pytest.approx(0.050)
    assert lag.stalled(2.020, 2.105) == pytest.approx(0.020 + 0.005)
    assert lag.stalled(2.2, 3.0) == 0.0
    # From a quarter second before the deadline to the call's end
    assert lag.excused(deadline=2.25, ended=2.4) == pytest.approx(0.050)
    assert lag.excused(deadline=2.28, ended=2.4) == pytest.approx(0.020)
    assert lag.excused(deadline=2.4, ended=2.5) == 0.0
    lag.note(9.000, 9.010)  # older than memory_s: forgotten
    assert lag.stalled(0.0, 10.0) == pytest.approx(0.010)


async def test_a_miss_the_loop_s_stall_accounts_for_is_not_the_device_s() -> None:
    # Device 4 ms, then the loop stalls 60 ms: the row, 10 ms from its deadline, ends 54 ms late, all of it the stall.
    sched, _clock, _lag = _setup(cost=0.004, stall=0.060)
    stream, playback = played(sched)
    playback.note_audio(0.010)
    async with sched:
        await stream.decode(window(16))
    assert sched.stats.missed_deadlines == 1  # the listener's miss is counted
    assert sched.recent_misses(0.0) == 0  # admission's is not
    assert sched.stats.misses_loop_lag == 1
    admission = Admission(sched, clock=sched.clock)
    decision = admission.decide()
    assert decision.admit, decision


async def test_a_window_submitted_late_by_a_stall_before_it_is_excused_too() -> None:
    # The tokens reach the scheduler 30 ms after the deadline because the loop stalled 40 ms before: the call
    # itself is prompt (3 ms), the lateness is the stall's.
    sched, clock, lag = _setup(cost=0.003, stall=0.0)
    stream, playback = played(sched)
    playback.note_audio(0.010)  # deadline 10 ms from now
    lag.note(clock.now - 0.010, clock.now + 0.030)
    clock.now += 0.030
    async with sched:
        await stream.decode(window(16))
    assert sched.stats.missed_deadlines == 1
    assert sched.recent_misses(0.0) == 0


async def test_lateness_beyond_the_stall_is_the_device_s_and_refuses() -> None:
    # Device 200 ms (short), loop stall 20 ms: 219 ms late, 199 of it the device's.
    sched, _clock, _lag = _setup(cost=0.200, stall=0.020)
    stream, playback = played(sched)
    playback.note_audio(0.001)
    async with sched:
        await stream.decode(window(16))
    assert sched.recent_misses(0.03) == 1
    assert sched.account.recent_missed[0][1] == pytest.approx(0.199)
    assert sched.stats.misses_loop_lag == 0
    decision = Admission(sched, clock=sched.clock).decide()
    assert not decision.admit and decision.rule == "misses"


async def test_without_a_probe_every_miss_counts() -> None:
    clock = FakeClock()
    sched = CodecScheduler(RecordingRunner(clock, cost=0.050), SchedulerPolicy(), clock=clock)
    stream, playback = played(sched)
    playback.note_audio(0.001)
    async with sched:
        await stream.decode(window(16))
    assert sched.recent_misses(0.03) == 1


async def test_the_probe_records_late_wake_ups_while_streams_are_open_and_then_stops() -> None:
    clock = FakeClock()
    wakes = iter([0.0, 0.002, 0.045, 0.0])  # how late each of the probe's sleeps wakes

    async def late_sleep(seconds: float) -> None:
        clock.now += seconds + next(wakes, 0.0)
        await asyncio.sleep(0)

    lag = LoopLag(clock=clock, sleep=late_sleep, interval_s=0.01)
    sched = CodecScheduler(RecordingRunner(clock), SchedulerPolicy(), clock=clock, loop_lag=lag)
    stream = sched.open_stream()
    for _ in range(6):
        await asyncio.sleep(0)
    sched.close_stream(stream)
    for _ in range(6):
        await asyncio.sleep(0)
    task = lag._task
    assert task is not None and task.done()  # no stream open: the probe ended
    assert lag.stalls == 1 and lag.stalled_seconds == pytest.approx(0.045)
    await sched.aclose()
