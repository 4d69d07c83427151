"""Why each window waits, as the scheduler records it when it decides (`CodecScheduler.why_waiting`): each reason
comes from the situation that causes it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.device import CodecScheduler, SchedulerPolicy, SRWindow
from tests.codec_fakes import FakeClock, GatedRunner, RecordingRunner, window


def scheduler(policy: SchedulerPolicy | None = None) -> CodecScheduler:
    clock = FakeClock()
    return CodecScheduler(RecordingRunner(clock), policy or SchedulerPolicy(pad_batch=False), clock=clock)


def queue(sched: CodecScheduler, *rows: tuple[str, int]) -> None:
    """Queue rows ("decode", tokens) or ("sr", samples), tagged by position, due in that order (no planner runs)."""
    loop = asyncio.get_running_loop()
    handle = sched.open_stream()
    for i, (kind, n) in enumerate(rows):
        if kind == "decode":
            row = window(n, i)
        else:
            row = SRWindow(np.zeros(n, np.float32), 0, 3 * n)  # type: ignore[assignment]
        sched._enqueue(handle, kind, row, loop.create_future(), deadline=float(i))  # type: ignore[arg-type]


def reasons(sched: CodecScheduler) -> list[str]:
    return [reason for *_, reason in sched.why_waiting()]


async def test_a_window_no_plan_has_looked_at_is_queued() -> None:
    sched = scheduler()
    queue(sched, ("decode", 16), ("decode", 16))
    assert reasons(sched) == ["queued", "queued"]


async def test_a_window_of_the_other_kind_waits_for_a_call_of_its_own() -> None:
    sched = scheduler()
    queue(sched, ("decode", 16), ("sr", 3_000), ("decode", 16))
    call = sched.plan()
    assert call is not None and call.kind == "decode" and len(call.windows) == 2
    assert reasons(sched) == ["other_kind"]


async def test_a_row_that_would_pad_the_call_past_the_bound_waits_on_padding() -> None:
    sched = scheduler()
    queue(
        sched, ("decode", 177), ("decode", 16), ("decode", 170)
    )  # 16 tokens in a 192-token call: 38% padding
    call = sched.plan()
    assert call is not None and [w.length for w in call.windows] == [177, 170]
    assert reasons(sched) == ["padding_bound"]


async def test_a_row_of_another_length_waits_beside_an_exact_length_call() -> None:
    sched = scheduler(SchedulerPolicy(decode_buckets=(16, 32), pad_batch=False))
    queue(
        sched, ("decode", 40), ("decode", 16), ("decode", 40), ("decode", 50)
    )  # 40 and 50: longer than every bucket
    call = sched.plan()
    assert call is not None and call.length is None and [w.length for w in call.windows] == [40, 40]
    assert reasons(sched) == ["length_mismatch", "length_mismatch"]
    # ... and an exact-length row beside a bucketed call
    call = sched.plan()
    assert call is not None and call.length == 16
    assert reasons(sched) == ["length_mismatch"]


async def test_a_row_past_the_calls_work_bound_waits_and_so_does_all_a_full_call_did_not_reach() -> None:
    sched = scheduler(
        SchedulerPolicy(
            decode_buckets=(16, 32), pad_batch=False, max_call_decode_tokens=48, max_pad_waste=1.0
        )
    )
    queue(sched, ("decode", 16), ("decode", 32), ("decode", 16), ("decode", 16))
    call = sched.plan()
    # 16 + 32 would need 2 x 32 = 64 > 48 tokens; the 16-token rows fit (3 x 16 = 48).
    assert call is not None and [w.length for w in call.windows] == [16, 16, 16]
    assert reasons(sched) == ["work_bound"]
    full = scheduler(SchedulerPolicy(decode_buckets=(16, 32), pad_batch=False, max_call_decode_tokens=32))
    queue(full, ("decode", 32), ("decode", 16), ("decode", 16))
    call = full.plan()
    assert call is not None and [w.length for w in call.windows] == [32]
    assert reasons(full) == ["work_bound", "work_bound"]  # the call was full before the plan read them


async def test_windows_the_scan_did_not_reach_wait_in_deadline_order() -> None:
    sched = scheduler(SchedulerPolicy(pad_batch=False, scan_limit=2))
    queue(sched, ("decode", 16), ("decode", 16), ("decode", 16), ("decode", 16))
    call = sched.plan()
    assert call is not None and len(call.windows) == 2
    assert reasons(sched) == ["deadline_order", "deadline_order"]


async def test_a_window_that_came_while_the_device_was_busy_waits_for_the_device() -> None:
    clock = FakeClock()
    runner = GatedRunner(clock)
    sched = CodecScheduler(runner, SchedulerPolicy(max_inflight=1), clock=clock)
    async with sched:
        first = asyncio.create_task(sched.open_stream().decode(window(16, 1)))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(sched.open_stream().decode(window(16, 2)))
        await asyncio.sleep(0.01)
        assert reasons(sched) == ["device_busy"]
        runner.gate.set()
        await asyncio.gather(first, second)
    assert runner.log == [1, 2]


async def test_a_model_call_due_sooner_takes_the_device_and_the_windows_wait_in_deadline_order() -> None:
    clock = FakeClock()
    runner = GatedRunner(clock)
    sched = CodecScheduler(runner, SchedulerPolicy(max_inflight=1), clock=clock)
    sched.start()
    try:
        busy = asyncio.create_task(sched.open_stream().decode(window(16, 9)))
        await asyncio.sleep(0.01)
        model = asyncio.create_task(sched.run_model_call("speaker", lambda: None))
        await asyncio.sleep(0)  # submitted now
        clock.now += 1.0  # the model call is due before the window below (due at its stream's arrival)
        handle = sched.open_stream()
        late = asyncio.create_task(handle.decode(window(16, 3)))
        await asyncio.sleep(0.01)
        assert [(kind, reason) for _, kind, _, reason in sched.why_waiting()] == [
            ("speaker", "device_busy"),
            ("decode", "device_busy"),
        ]
        runner.model_gate.clear()
        runner.gate.set()
        await busy
        while sched.pending_model_calls:  # the model call takes the device (and holds it): the window waits
            await asyncio.sleep(0)
        waiting = sched.why_waiting()
        assert [(stream_id, reason) for stream_id, _, _, reason in waiting] == [(handle.id, "deadline_order")]
        runner.model_gate.set()
        await asyncio.gather(model, late)
    finally:
        runner.gate.set()
        runner.model_gate.set()
        await sched.aclose()
    assert runner.log == [9, "model", 3]


@pytest.mark.parametrize("n", [1, 3])
async def test_a_window_the_last_plan_looked_at_keeps_its_reason_until_the_next_decision(n: int) -> None:
    sched = scheduler()
    queue(sched, ("decode", 177), *[("decode", 16)] * n)
    sched.plan()
    assert reasons(sched) == ["padding_bound"] * n
    call = sched.plan()  # the next decision takes them
    assert call is not None and len(call.windows) == n and reasons(sched) == []
