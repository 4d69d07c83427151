"""Rule 3's pass (services/device/headroom.py, `Admission(queue_headroom_s=...)`): what every listener keeps once the
codec's queue drains in deadline order at its measured seconds per work unit, and admission letting a stream past the
codec's cost while that leaves enough, at 16 kHz only. Simulated clock, hand-set figures; no timings."""

from __future__ import annotations

import asyncio
import math

import pytest

from services.device import CodecScheduler, PlaybackClock, SchedulerPolicy
from services.device.admission import Admission
from services.device.headroom import drain_headroom
from services.device.queueing import SETTLED_TOKENS, PendingWindow, StreamHandle
from tests.codec_fakes import FakeClock, FiguresScheduler, RecordingRunner, window


def _stream(sched: CodecScheduler, audio_s: float | None, settled: bool) -> StreamHandle:
    """A stream heard with `audio_s` of audio in hand from now (None: nobody hears it yet)."""
    playback = PlaybackClock(sched.clock(), clock=sched.clock)
    if audio_s is not None:
        playback.note_audio(audio_s)
    handle = sched.open_stream(playback)
    handle.decoded_tokens = SETTLED_TOKENS if settled else 0
    return handle


def _pending(stream: StreamHandle, units: int, deadline: float, *, kind: str = "decode") -> PendingWindow:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    return PendingWindow(
        kind=kind,  # type: ignore[arg-type]  # "decode" or "sr"
        window=window(16),
        stream=stream,
        deadline=deadline,
        seq=0,
        submitted=0.0,
        future=future,  # type: ignore[arg-type]  # never resolved here
        units=units,
        span=None,
        bucket=None,
        true_end=False,
        first=False,
    )


async def test_the_queue_drains_in_deadline_order_and_each_heard_window_keeps_what_is_left() -> None:
    clock = FakeClock()
    sched = CodecScheduler(RecordingRunner(clock), SchedulerPolicy(), clock=clock)
    newcomer = _stream(sched, None, settled=False)  # nobody hears it yet: its window costs, judged by nothing
    playing = _stream(sched, 1.0, settled=True)
    rates = {"decode": 0.001, "sr": None}  # seconds per work unit; AP-BWE not measured yet
    queue = [_pending(newcomer, 200, clock.now), _pending(playing, 100, clock.now + 1.0)]
    # 0.2 s for the newcomer's window, then 0.1 s for the listener's: 1.0 - 0.3 left
    assert drain_headroom(queue, [newcomer, playing], clock.now, rates) == pytest.approx(0.7)
    queue[0].future.cancel()  # done: no longer in line
    assert drain_headroom(queue, [newcomer, playing], clock.now, rates) == pytest.approx(0.9)
    sr = _pending(playing, 50, clock.now + 1.0, kind="sr")  # a kind not measured costs the dearer one's rate
    assert drain_headroom([sr], [playing], clock.now, rates) == pytest.approx(0.95)
    low = _stream(sched, 0.3, settled=True)  # a settled listener with 0.3 s in hand and nothing queued
    assert drain_headroom([], [playing, low], clock.now, rates) == pytest.approx(0.3)
    fresh = _stream(sched, 0.08, settled=False)  # a newcomer's 80 ms first chunk: its queued window says it
    assert drain_headroom([], [playing, fresh], clock.now, rates) == pytest.approx(1.0)
    assert drain_headroom([], [newcomer], clock.now, rates) == math.inf  # nobody heard
    assert drain_headroom(queue, [playing], clock.now, {"decode": None, "sr": None}) == -math.inf


async def test_the_scheduler_reads_its_rate_from_its_recent_calls() -> None:
    clock = FakeClock()
    sched = CodecScheduler(RecordingRunner(clock, cost=0.05), SchedulerPolicy(), clock=clock)
    async with sched:
        playing = _stream(sched, 2.0, settled=True)
        assert sched.drain_headroom() == -math.inf  # no call measured: nothing to drain at
        await playing.decode(window(16))  # 0.05 s on the fake clock
        rates = sched.account.seconds_per_work(clock.now)
        assert rates["decode"] == pytest.approx(0.05 / sched.stats.valid_work_by_kind["decode"])
        assert rates["sr"] is None
        assert sched.drain_headroom() == pytest.approx(2.0 - 0.05)  # nothing queued: the listener's own
        clock.now += 10.0  # the call left the window: the rate since start stands in
        assert sched.account.seconds_per_work(clock.now)["decode"] == rates["decode"]


def _over_the_codecs_cap(sched: FiguresScheduler, *adms: Admission) -> None:
    """Ten seconds of the open streams costing the codec 0.9 of the device: one more passes a cap of 0.5."""
    for _ in range(100):
        sched.now += 0.1
        sched.stats.busy_seconds += 0.09
        for adm in adms:
            adm.codec_cost()  # the measure advances as admission reads it


def test_rule_3_passes_at_16_khz_while_the_drained_queue_leaves_enough() -> None:
    sched = FiguresScheduler(streams=9)
    adm = Admission(sched, max_codec_share=0.5, ramp_floor=100, queue_headroom_s=0.5)
    unset = Admission(sched, max_codec_share=0.5, ramp_floor=100)  # the default: rule 3 as it reads
    _over_the_codecs_cap(sched, adm, unset)
    assert adm.decide().rule == "codec_cost"  # nothing measured to drain at
    sched.headroom = 0.49
    assert adm.decide().rule == "codec_cost"
    sched.headroom = 0.5
    assert adm.decide().admit
    sched.stats.rows_by_kind["sr"] += 1  # an AP-BWE row: 48 kHz streams are live
    assert adm.decide().rule == "codec_cost"
    _over_the_codecs_cap(
        sched, adm, unset
    )  # ten more seconds of it, with no AP-BWE row (codec_window_s: 5 s)
    assert adm.decide().admit
    assert unset.queue_headroom_s is None and unset.decide().rule == "codec_cost"
    assert (
        adm.view()["queue_headroom_s"] == 0.5 and adm.view()["drain_headroom_s"] == 0.5
    )  # what operators read
    sched.headroom = math.inf  # nobody heard: JSON has no infinity
    assert adm.view()["drain_headroom_s"] is None and unset.view()["drain_headroom_s"] is None


async def test_the_rate_prices_a_windows_own_units_with_its_calls_padding() -> None:
    clock = FakeClock()
    policy = SchedulerPolicy(decode_reach=None)  # a decode row's units are its whole window
    sched = CodecScheduler(RecordingRunner(clock, cost=0.05), policy, clock=clock)
    async with sched:
        playing = _stream(sched, 2.0, settled=True)
        await playing.decode(window(13))  # padded to the 16-token bucket: 16 units of work, 13 of its own
        assert sched.stats.work == 16
        assert sched.account.seconds_per_work(clock.now)["decode"] == pytest.approx(0.05 / 13)
