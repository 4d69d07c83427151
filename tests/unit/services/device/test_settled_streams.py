"""Which streams are settled (past their first second of audio: `queueing.SETTLED_TOKENS` kept tokens decoded), and
the settled streams' share of the codec's seconds and audio (`SchedulerStats.settled_*`), counted by the scheduler's
accounting call by call. The scheduler runs on a fake clock that only its runner moves."""

from __future__ import annotations

import asyncio

import pytest

from services.device import CodecScheduler, SchedulerPolicy
from services.device.queueing import SETTLED_TOKENS
from tests.codec_fakes import FakeClock, RecordingRunner, window


def make(cost: float = 0.04) -> CodecScheduler:
    clock = FakeClock()
    return CodecScheduler(RecordingRunner(clock, cost), SchedulerPolicy(), clock=clock)


async def test_a_stream_settles_once_a_second_of_its_audio_is_decoded() -> None:
    assert SETTLED_TOKENS == 50
    sched = make()
    async with sched:
        handle = sched.open_stream()
        await handle.decode(window(40))
        assert (handle.settled, sched.settled_streams) == (False, 0)
        await handle.decode(window(10))
        assert (handle.settled, sched.settled_streams) == (True, 1)
        await handle.decode(window(40))
        assert sched.settled_streams == 1  # counted once
        sched.close_stream(handle)
        sched.close_stream(handle)  # a second close changes nothing
        assert sched.settled_streams == 0


async def test_a_calls_seconds_split_by_its_rows_and_only_settled_rows_audio_counts() -> None:
    """One call of two rows, one of a settled stream: half its seconds and that row's tokens are the settled
    streams'. A row that settles its stream in this call counts as new: its first second is in it."""
    sched = make(cost=0.04)
    async with sched:
        old, new = sched.open_stream(), sched.open_stream()
        await old.decode(window(60))
        before = sched.stats.settled_seconds, sched.stats.settled_kept_tokens
        assert before == (0.0, 0)  # the row that settled it was not yet settled
        await asyncio.gather(old.decode(window(30)), new.decode(window(30)))
    assert [len(c.windows) for c in sched.runner.calls] == [1, 2]  # type: ignore[attr-defined]
    assert sched.stats.settled_seconds == pytest.approx(0.02)
    assert sched.stats.settled_kept_tokens == 30


async def test_a_stream_closed_before_its_call_ends_is_not_counted_open() -> None:
    sched = make()
    async with sched:
        handle = sched.open_stream()
        pending = asyncio.ensure_future(handle.decode(window(60)))
        while not sched.runner.calls:  # type: ignore[attr-defined]
            await asyncio.sleep(0)  # until the call is on the device
        sched.close_stream(handle)
        await asyncio.gather(pending, return_exceptions=True)
        assert handle.settled  # the call ran and settled it, after it closed
        assert sched.settled_streams == 0
