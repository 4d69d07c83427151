"""`SchedulerPolicy.hold_slack_s`: live windows wait while none is due within the hold, a newcomer's first window
never waits, and a held window rides along in the next urgent call or runs once it is due within the hold."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.device import CodecScheduler, SchedulerPolicy
from tests.codec_fakes import FakeClock, RecordingRunner, played, window


def held_scheduler(hold_s: float) -> tuple[CodecScheduler, FakeClock]:
    clock = FakeClock()
    sched = CodecScheduler(RecordingRunner(clock), SchedulerPolicy(hold_slack_s=hold_s), clock=clock)
    sched._wake = asyncio.Event()  # plan() alone, without the planning loop
    return sched, clock


def buffered(sched: CodecScheduler, seconds: float):  # type: ignore[no-untyped-def]
    handle, playback = played(sched)
    playback.note_audio(seconds)  # its deadline is `seconds` away
    return handle


async def test_a_window_due_later_than_the_hold_waits_and_says_why() -> None:
    sched, clock = held_scheduler(1.0)
    ahead = buffered(sched, 3.0)
    sched._enqueue(ahead, "decode", window(40, 1), asyncio.get_running_loop().create_future())
    assert sched.plan() is None
    assert [reason for _, _, _, reason in sched.why_waiting()] == ["held"]
    clock.now += 2.0  # now due within the hold
    call = sched.plan()
    assert call is not None and [int(w.ids[0]) for w in call.windows] == [1]


async def test_a_newcomers_first_window_is_never_held_and_takes_a_held_window_along() -> None:
    sched, _ = held_scheduler(1.0)
    loop = asyncio.get_running_loop()
    ahead = buffered(sched, 3.0)
    sched._enqueue(ahead, "decode", window(40, 1), loop.create_future())
    assert sched.plan() is None
    newcomer = sched.open_stream()  # no audio yet: due at its arrival
    sched._enqueue(newcomer, "decode", window(40, 2), loop.create_future())
    call = sched.plan()
    assert call is not None and [int(w.ids[0]) for w in call.windows] == [2, 1]


async def test_the_planning_loop_runs_a_held_window_when_its_hold_ends() -> None:
    loop = asyncio.get_running_loop()
    clock = loop.time
    runner = RecordingRunner(FakeClock())
    async with CodecScheduler(runner, SchedulerPolicy(hold_slack_s=1.0), clock=clock) as sched:
        handle, playback = played(sched)
        started = loop.time()
        playback.note_audio(1.05)  # due 50 ms after the hold
        out = await asyncio.wait_for(handle.decode(window(40, 3)), timeout=2.0)
        assert loop.time() - started >= 0.04  # held, not run at once (the timer, not a deadline, released it)
        assert np.all(out == 3) and runner.log == [3]


async def test_without_a_hold_the_scheduler_is_work_conserving() -> None:
    sched, _ = held_scheduler(float("inf"))
    ahead = buffered(sched, 30.0)
    sched._enqueue(ahead, "decode", window(40, 1), asyncio.get_running_loop().create_future())
    assert sched.plan() is not None


def test_a_negative_or_nan_hold_is_refused() -> None:
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="hold_slack_s"):
            SchedulerPolicy(hold_slack_s=bad)
