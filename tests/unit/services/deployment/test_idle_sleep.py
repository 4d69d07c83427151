"""Idle sleep's state machine on a simulated clock: it sleeps only when idle and not busy, requests during sleep wait
for one shared wake, a failed wake is reported and the next request retries it, a failed sleep wakes what slept,
and socket traffic (touch) resets the timer. Then the runtime's device work: the codec models move through the
codec scheduler, and the engine's sleep is the one Modal's snapshot uses."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from services.deployment.idle_sleep import IdleSleep, SleepState, WakeFailed, codec_modules
from services.deployment.runtime import ModelRuntime
from shared import metrics
from shared.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Device:
    """Records the sleeps and wakes; a wake can be held open (a gate) or made to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail_wakes = 0
        self.fail_sleep = False

    async def sleep(self) -> None:
        self.calls.append("sleep")
        if self.fail_sleep:
            raise RuntimeError("engine would not sleep")

    async def wake(self) -> None:
        self.calls.append("wake")
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_wakes:
            self.fail_wakes -= 1
            raise RuntimeError("CUDA out of memory")


def machine(busy: bool = False) -> tuple[IdleSleep, Clock, Device]:
    clock, device = Clock(), Device()
    idle = IdleSleep(10.0, sleep=device.sleep, wake=device.wake, busy=lambda: busy, clock=clock)
    return idle, clock, device


def state_gauge(state: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"{metrics.PREFIX}_idle_sleep_state", {"state": state}) or 0.0


async def test_it_sleeps_after_the_idle_time_and_not_before() -> None:
    idle, clock, device = machine()
    clock.now += 9.9
    assert not await idle.poll() and idle.awake
    clock.now += 0.2
    assert await idle.poll()
    assert idle.state is SleepState.ASLEEP and device.calls == ["sleep"]
    assert state_gauge("asleep") == 1.0 and state_gauge("awake") == 0.0
    assert not await idle.poll()  # asleep: nothing more to do
    assert device.calls == ["sleep"]


async def test_a_busy_device_never_sleeps() -> None:
    idle, clock, device = machine(busy=True)
    clock.now += 3600
    assert not await idle.poll() and idle.awake and device.calls == []


async def test_socket_traffic_resets_the_idle_timer() -> None:
    idle, clock, device = machine()
    for _ in range(5):  # a socket talking every 6 s for 30 s
        clock.now += 6.0
        idle.touch()
        assert not await idle.poll()
    assert idle.awake and device.calls == []
    clock.now += 10.0
    assert await idle.poll()


async def test_concurrent_first_requests_wait_for_one_wake() -> None:
    idle, clock, device = machine()
    clock.now += 11
    await idle.poll()
    device.gate = asyncio.Event()
    waiters = [asyncio.create_task(idle.wake()) for _ in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert idle.state is SleepState.WAKING and state_gauge("waking") == 1.0
    assert not any(w.done() for w in waiters)  # every request waits; none is refused
    device.gate.set()
    waited = await asyncio.gather(*waiters)
    assert device.calls == ["sleep", "wake"]  # one wake for all of them
    assert all(ms is not None and ms >= 0 for ms in waited)
    assert idle.awake and idle.wakes == 1 and idle.last_request == clock.now
    assert await idle.wake() is None  # awake: no wait, no wake


async def test_a_failed_wake_is_reported_and_the_next_request_retries() -> None:
    idle, clock, device = machine()
    clock.now += 11
    await idle.poll()
    device.fail_wakes = 1
    before = metrics.REGISTRY.get_sample_value(f"{metrics.PREFIX}_idle_wake_failures_total") or 0.0
    first, second = asyncio.create_task(idle.wake()), asyncio.create_task(idle.wake())
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, WakeFailed) for r in results)  # both waited for the one failed wake
    assert idle.state is SleepState.ASLEEP
    assert metrics.REGISTRY.get_sample_value(f"{metrics.PREFIX}_idle_wake_failures_total") == before + 1
    assert await idle.wake() is not None  # the next request tries again, and it works
    assert idle.awake and device.calls == ["sleep", "wake", "wake"]


async def test_a_request_while_falling_asleep_waits_then_wakes_it() -> None:
    idle, clock, device = machine()
    gate = asyncio.Event()

    async def slow_sleep() -> None:
        device.calls.append("sleep")
        await gate.wait()

    idle._sleep = slow_sleep  # noqa: SLF001 - a sleep that takes a while
    clock.now += 11
    sleeping = asyncio.create_task(idle.poll())
    await asyncio.sleep(0)
    assert idle.state is SleepState.FALLING_ASLEEP
    request = asyncio.create_task(idle.wake())
    await asyncio.sleep(0)
    assert not request.done()
    gate.set()
    assert await sleeping
    assert await request is not None
    assert idle.awake and device.calls == ["sleep", "wake"]


async def test_a_failed_sleep_wakes_what_slept_and_stays_awake() -> None:
    idle, clock, device = machine()
    device.fail_sleep = True
    clock.now += 11
    with pytest.raises(RuntimeError, match="would not sleep"):
        await idle.poll()
    assert idle.awake and device.calls == ["sleep", "wake"]
    assert not await idle.poll()  # the timer starts again from the failure


async def test_the_runtime_moves_the_codec_models_on_the_scheduler_and_shares_the_engine_sleep(
    demo_model_dir: Path,
) -> None:
    runtime = ModelRuntime(
        Settings(
            model_dir=demo_model_dir,
            warmup=False,
            auth_enabled=False,
            device="cpu",
            sr_enabled=False,
            log_json=False,
            idle_sleep_s=30,
        )
    )
    await runtime.start()
    try:
        assert runtime.ready and runtime.idle_sleep is not None
        assert runtime.pipeline_resources().idle is runtime.idle_sleep
        assert runtime.health().idle_sleep == "awake"
        threads: list[str] = []
        modules = codec_modules((runtime.bicodec, runtime.sr, runtime.aligner, None))
        assert runtime.bicodec in modules
        original = runtime._move_codec  # noqa: SLF001

        def recorded(device: str) -> None:
            threads.append(threading.current_thread().name)
            original(device)

        runtime._move_codec = recorded  # type: ignore[method-assign]  # noqa: SLF001
        await runtime.sleep_device()
        await runtime.wake_device()
        # Both moves ran as the codec scheduler's device work, never on the event loop.
        assert len(threads) == 2 and all(t.startswith("codec-device") for t in threads)
        assert next(runtime.bicodec.parameters()).device.type == "cpu"
    finally:
        await runtime.shutdown()
