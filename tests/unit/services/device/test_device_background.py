"""Background work in the codec scheduler (services/device/background.py): it never runs ahead of a live window, runs
when the device is idle, keeps a bounded share under live load, is paused first when live streams miss, and never
moves admission's decision. On a virtual clock (bench.sim.virtual_loop): decisions and shares, never wall timings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from bench.sim.virtual_loop import VirtualClock, run_virtual
from services.device import CodecScheduler, PlaybackClock, SchedulerPolicy
from services.device.admission import Admission
from services.device.background import BackgroundPolicy
from services.device.calls import Call
from shared.metrics import REGISTRY
from tests.codec_fakes import FakeClock, RecordingRunner, played, window

T = TypeVar("T")


class SleepingRunner:
    """Each call holds the (virtual) device for `cost` seconds; records (work class tag, start, end) per call: tag
    >= 100 marks a background window."""

    def __init__(self, clock: VirtualClock, cost: float = 0.02) -> None:
        self.clock, self.cost = clock, cost
        self.log: list[tuple[str, float, float]] = []

    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]:
        start = self.clock.now
        await asyncio.sleep(self.cost)
        tag = "background" if int(call.windows[0].ids[0]) >= 100 else "live"
        self.log.append((tag, start, self.clock.now))
        return [np.zeros((w.keep_end - w.keep_start) * 320, np.float32) for w in call.windows], self.cost

    async def run_model_call(self, fn: Callable[[], T]) -> tuple[T, float]:
        return fn(), 0.0

    def close(self) -> None:
        return None


def _background_seconds(runner: SleepingRunner) -> float:
    return sum(end - start for tag, start, end in runner.log if tag == "background")


async def test_a_background_window_never_runs_ahead_of_a_live_window() -> None:
    clock = FakeClock()
    sched = CodecScheduler(RecordingRunner(clock), SchedulerPolicy(), clock=clock)
    live, playback = played(sched)
    playback.note_audio(30.0)  # a live stream far from running dry: its window is due in 30 s
    job = sched.open_stream(work_class="background")
    loop = asyncio.get_running_loop()
    sched._wake = asyncio.Event()
    sched._enqueue(job, "decode", window(16, 100), loop.create_future())  # the job's window came first
    sched._enqueue(live, "decode", window(16, 1), loop.create_future())
    planned = sched._plan()
    assert planned is not None and [int(w.ids[0]) for w in planned[0].windows] == [1]
    assert sched._plan() is None  # the live queue is empty: background never rides in a live plan
    assert sched.pending_background_windows == 1 and sched.pending_windows == 0


def test_background_runs_when_the_device_is_idle_and_its_seconds_are_its_own() -> None:
    async def main() -> tuple[CodecScheduler, SleepingRunner]:
        clock = asyncio.get_running_loop().clock  # type: ignore[attr-defined]
        runner = SleepingRunner(clock)
        sched = CodecScheduler(runner, SchedulerPolicy(), clock=clock)
        async with sched:
            job = sched.open_stream(work_class="background")
            for i in range(10):
                await job.decode(window(16, 100 + i))
            assert sched.background_streams == 1 and sched.active_streams == 0
            assert sched.busy_ratio() == 0.0  # admission's figure: background is not in it
        return sched, runner

    before = REGISTRY.get_sample_value("veena3_tts_device_seconds_total", {"work_class": "background"}) or 0.0
    sched, runner = run_virtual(main)
    assert [tag for tag, _, _ in runner.log] == ["background"] * 10
    assert sched.stats.busy_seconds == 0.0 and sched.stats.calls == 0
    assert abs(sched.stats.background_seconds - 0.2) < 1e-9
    after = REGISTRY.get_sample_value("veena3_tts_device_seconds_total", {"work_class": "background"}) or 0.0
    assert abs(after - before - 0.2) < 1e-9


def _live_beside_background(share: float, seconds: float = 4.0) -> tuple[SleepingRunner, CodecScheduler]:
    """One live stream playing in real time (a window of 0.32 s of audio each 0.32 s, 2 s buffered) beside a job that
    always has a window waiting."""

    async def main() -> tuple[SleepingRunner, CodecScheduler]:
        clock = asyncio.get_running_loop().clock  # type: ignore[attr-defined]
        runner = SleepingRunner(clock, cost=0.02)
        sched = CodecScheduler(
            runner, SchedulerPolicy(), clock=clock, background=BackgroundPolicy(share=share)
        )
        async with sched:
            playback = PlaybackClock(clock(), clock=clock)
            live = sched.open_stream(playback)
            job = sched.open_stream(work_class="background")

            async def background() -> None:
                while True:
                    await job.decode(window(16, 100))

            worker = asyncio.create_task(background())
            await live.decode(window(16, 1))
            playback.note_audio(2.0)
            end = clock() + seconds
            while clock() < end:
                await asyncio.sleep(0.32)
                await live.decode(window(16, 1))
                playback.note_audio(0.32)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        return runner, sched

    return run_virtual(main)


def test_background_share_is_bounded_under_live_load_and_live_windows_keep_their_deadlines() -> None:
    runner, sched = _live_beside_background(share=0.25)
    elapsed = runner.log[-1][2] - runner.log[0][1]
    share = _background_seconds(runner) / elapsed
    assert 0.1 < share <= 0.25 + 0.02  # the bound, give or take one call
    assert sched.stats.missed_deadlines == 0
    assert sched.background.pauses > 0
    # with no bound but the gate's slack and misses, background takes the rest of the device
    free, _ = _live_beside_background(share=1.0)
    assert _background_seconds(free) / (free.log[-1][2] - free.log[0][1]) > 0.8


def test_background_is_paused_first_when_a_live_stream_misses() -> None:
    clock = FakeClock()
    sched = CodecScheduler(RecordingRunner(clock), SchedulerPolicy(), clock=clock)
    live, playback = played(sched)
    playback.note_audio(5.0)
    gate = sched.background
    assert gate.may_start(clock(), live_streams=1, live_misses=0, live_min_slack=sched.min_slack())
    sched.account.recent_missed.append((clock(), 0.05))  # a playing live window ended 50 ms late
    assert not gate.may_start(clock(), live_streams=1, live_misses=sched.recent_misses(), live_min_slack=5.0)
    clock.now += 1.0  # a live stream about to run dry pauses it too
    sched.account.recent_missed.clear()
    assert not gate.may_start(clock(), live_streams=1, live_misses=0, live_min_slack=0.1)
    assert gate.may_start(clock(), live_streams=0, live_misses=0, live_min_slack=0.1)  # no live stream: runs


def test_admission_decides_the_same_with_background_streams_open() -> None:
    def decisions(with_background: bool) -> list[tuple[bool, str]]:
        async def main() -> list[tuple[bool, str]]:
            clock = asyncio.get_running_loop().clock  # type: ignore[attr-defined]
            runner = SleepingRunner(clock, cost=0.02)
            sched = CodecScheduler(runner, SchedulerPolicy(), clock=clock)
            admission = Admission(
                sched, clock=clock, ramp_floor=2, min_codec_sample_s=0.5, max_codec_share=0.2
            )
            out: list[tuple[bool, str]] = []
            async with sched:
                workers = []
                if with_background:
                    for _ in range(3):
                        job = sched.open_stream(work_class="background", owner="k")

                        async def work(job: Any = job) -> None:
                            while True:
                                await job.decode(window(64, 100))

                        workers.append(asyncio.create_task(work()))
                for _ in range(12):
                    decision = admission.decide("k")
                    out.append((decision.admit, decision.rule))
                    if decision.admit:
                        playback = PlaybackClock(clock(), clock=clock)
                        handle = sched.open_stream(playback, owner="k")
                        await handle.decode(window(16, 1))
                        playback.note_audio(1.0)
                    await asyncio.sleep(0.3)
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
            return out

        return run_virtual(main)

    alone = decisions(False)
    assert any(not admit for admit, _ in alone)  # the caps are tight enough to refuse
    assert decisions(True) == alone
