"""Model calls beside the codec windows (`CodecScheduler.run_model_call`): in deadline order with the windows, on the
runner's device thread, in the accounting admission reads, and never run once their caller has gone."""

from __future__ import annotations

import asyncio
import threading

import pytest

from services.device import CodecScheduler, SchedulerPolicy
from services.device.admission import Admission
from services.device.runner import ModelRunner
from shared.metrics import REGISTRY
from tests.codec_fakes import FakeClock, GatedRunner, RecordingRunner, played, window


def gated() -> tuple[CodecScheduler, GatedRunner, FakeClock]:
    clock = FakeClock()
    runner = GatedRunner(clock)
    return CodecScheduler(runner, SchedulerPolicy(max_inflight=1), clock=clock), runner, clock


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def histogram_count(kind: str) -> float:
    return (
        REGISTRY.get_sample_value("veena3_tts_codec_scheduler_model_call_seconds_count", {"kind": kind})
        or 0.0
    )


async def test_a_model_call_waits_behind_a_newcomers_first_window_and_goes_before_a_stream_with_audio_buffered() -> (
    None
):
    sched, runner, clock = gated()
    async with sched:
        busy = asyncio.create_task(sched.open_stream().decode(window(16, tag=9)))  # holds the one device slot
        await settle()
        playing, playback = played(sched)
        playback.note_audio(3.0)  # due in 3 s: later than the model call (due 0.25 s after its submission)
        later = asyncio.create_task(playing.decode(window(16, tag=2)))
        model = asyncio.create_task(sched.run_model_call("speaker", lambda: "d-vector"))
        newcomer = asyncio.create_task(
            sched.open_stream().decode(window(200, tag=1))
        )  # due at its arrival: now
        await settle()
        assert [reason for *_, reason in sched.why_waiting()] == ["device_busy"] * 3
        runner.gate.set()
        assert await model == "d-vector"
        await asyncio.gather(busy, later, newcomer)
    assert runner.log == [9, 1, "model", 2]


async def test_a_model_call_is_due_its_slack_after_submission_so_windows_due_later_never_hold_it_back() -> (
    None
):
    sched, runner, clock = gated()
    async with sched:
        busy = asyncio.create_task(sched.open_stream().decode(window(16, tag=9)))
        await settle()
        model = asyncio.create_task(sched.run_model_call("reference", lambda: 7))
        await settle()
        clock.now += 0.3  # past the model call's deadline: a newcomer arriving now is due after it
        newcomer = asyncio.create_task(sched.open_stream().decode(window(16, tag=1)))
        await settle()
        runner.gate.set()
        await asyncio.gather(busy, model, newcomer)
    assert runner.log == [9, "model", 1]


async def test_model_call_seconds_count_in_the_busy_ratio_and_admissions_codec_cost() -> None:
    clock = FakeClock()
    runner = RecordingRunner(clock, model_cost=0.05)
    sched = CodecScheduler(runner, clock=clock)
    admission = Admission(sched, min_codec_sample_s=0.5)
    before = histogram_count("align")
    async with sched:
        sched.open_stream()  # one open stream: the cost is per stream-second
        admission.codec_cost()  # starts integrating here
        assert await sched.run_model_call("align", lambda: [0.1, 0.2]) == [0.1, 0.2]
        clock.now += 0.95
        cost = admission.codec_cost()
    assert (
        sched.stats.busy_seconds == pytest.approx(0.05) and sched.stats.calls == 0
    )  # no codec call, no rows
    assert sched.stats.model_calls_by_kind == {"speaker": 0, "reference": 0, "align": 1, "move": 0}
    assert sched.stats.model_seconds_by_kind["align"] == pytest.approx(0.05)
    assert sched.busy_ratio() == pytest.approx(0.05 / 2.0)
    assert cost == pytest.approx(0.05 / 1.0)  # 0.05 device seconds over one stream open for 1 s
    assert histogram_count("align") == before + 1


async def test_a_caller_cancelled_before_its_model_call_starts_means_it_never_runs() -> None:
    sched, runner, _ = gated()
    ran: list[str] = []
    async with sched:
        busy = asyncio.create_task(sched.open_stream().decode(window(16, tag=9)))
        await settle()
        caller = asyncio.create_task(sched.run_model_call("speaker", lambda: ran.append("queued")))
        await settle()
        assert sched.pending_model_calls == 1
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert sched.pending_model_calls == 0
        runner.gate.set()
        await busy
        # Taken by the scheduler, then cancelled before a device thread ran it: still never runs.
        runner.model_gate.clear()
        dispatched = asyncio.create_task(sched.run_model_call("speaker", lambda: ran.append("dispatched")))
        await settle()
        assert sched.calls_in_flight == 1 and sched.pending_model_calls == 0
        dispatched.cancel()
        runner.model_gate.set()
        with pytest.raises(asyncio.CancelledError):
            await dispatched
        await settle()
        assert await sched.run_model_call("speaker", lambda: "ran") == "ran"
    assert ran == []
    assert runner.log == [9, "model", "model"]  # the runner was handed both: the cancelled one returned unrun
    assert (
        sched.stats.model_calls_by_kind["speaker"] == 1
    )  # the one that ran; a skipped one holds no device time


async def test_a_model_calls_failure_reaches_its_caller_and_its_time_still_counts() -> None:
    sched, runner, _ = gated()
    runner.gate.set()

    def broken() -> None:
        raise RuntimeError("CUDA error: out of memory")

    async with sched:
        with pytest.raises(RuntimeError, match="out of memory"):
            await sched.run_model_call("reference", broken)
        assert await sched.run_model_call("reference", lambda: 1) == 1
    assert sched.stats.model_calls_by_kind["reference"] == 2


async def test_stopping_the_scheduler_fails_model_calls_still_waiting() -> None:
    sched, runner, _ = gated()
    sched.start()
    busy = asyncio.create_task(sched.open_stream().decode(window(16, tag=9)))
    await settle()
    waiting = asyncio.create_task(sched.run_model_call("align", lambda: None))
    await settle()
    closing = asyncio.create_task(sched.aclose())
    await settle()  # the planner stopped; the call in flight still runs
    with pytest.raises(RuntimeError, match="stopped"):
        await waiting
    runner.gate.set()
    await asyncio.gather(closing, busy)
    assert runner.log == [9]


class _CpuDecoder:
    hop_length = 320
    device = "cpu"


async def test_the_model_runner_runs_a_model_call_on_its_device_thread() -> None:
    runner = ModelRunner(_CpuDecoder())
    try:
        async with CodecScheduler(runner, SchedulerPolicy.for_cpu()) as sched:
            name = await sched.run_model_call("speaker", lambda: threading.current_thread().name)
    finally:
        runner.close()
    assert name.startswith("codec-device") and sched.stats.model_calls_by_kind["speaker"] == 1


async def test_the_cost_model_stand_in_runs_model_calls_as_they_are() -> None:
    from bench.standin.cost_model import CostModel, CostModelRunner

    model = CostModel.from_dict(
        {
            "llm_step_ms": {"fixed": 1, "per_row": 0},
            "llm_prefill_ms": {"fixed": 0, "per_token": 0},
            "decode_ms": {"fixed": 1, "per_token": 0},
            "sr_ms": {"fixed": 1, "per_input_sample": 0},
        }
    )
    async with CodecScheduler(CostModelRunner(model)) as sched:
        assert await sched.run_model_call("speaker", lambda: 42) == 42
    assert sched.stats.model_calls_by_kind["speaker"] == 1
