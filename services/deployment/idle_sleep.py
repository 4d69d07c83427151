"""Idle sleep: after `TTS_IDLE_SLEEP_S` without requests the device is freed, and the next request wakes it.

States: awake -> falling_asleep -> asleep -> waking -> awake. The request path feeds the idle timer (`touch`, one
clock read: the pipeline's gate in `SpeechService.check_available`, which every HTTP request and every socket
utterance passes) and, when not awake, waits for `wake()`; nothing is refused because of sleep. Concurrent first
requests share one wake. A wake that fails leaves the state asleep, is logged and counted, and raises `WakeFailed`
to the requests that waited; the next request tries again. A request arriving while the device falls asleep waits
for that to finish, then wakes it.

What sleeping does is the runtime's (`sleep` / `wake` callbacks: services/deployment/runtime.py). The timer never
puts a busy device to sleep (`busy`: requests generating, streams open, codec work queued), so a long stream is never
cut, and the idle time runs from the end of the last work.
`run()` is the timer loop; `poll()` is one look at the clock (tests drive it with a simulated clock).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import torch
from torch import nn

from shared import metrics

logger = logging.getLogger("services.deployment.idle_sleep")


class SleepState(enum.Enum):
    AWAKE = "awake"
    FALLING_ASLEEP = "falling_asleep"
    ASLEEP = "asleep"
    WAKING = "waking"


class WakeFailed(RuntimeError):
    """The device could not be woken; the request may be retried (the next one tries again)."""


class IdleSleep:
    def __init__(
        self,
        idle_s: float,
        *,
        sleep: Callable[[], Awaitable[None]],
        wake: Callable[[], Awaitable[None]],
        busy: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_s <= 0:
            raise ValueError("idle sleep needs a positive idle time")
        self.idle_s = idle_s
        self._sleep, self._wake, self._busy, self._clock = sleep, wake, busy, clock
        self.state = SleepState.AWAKE
        self.last_request = clock()
        self.sleeps = 0
        self.wakes = 0
        self.last_wake_ms: float | None = None
        self._transition: asyncio.Task[None] | None = None  # the sleep or wake under way
        self._set_state(SleepState.AWAKE)

    # ------------------------------------------------------------------ the request path
    @property
    def awake(self) -> bool:
        return self.state is SleepState.AWAKE

    def touch(self) -> None:
        """A request arrived (or a socket is talking): the idle timer starts again."""
        self.last_request = self._clock()

    async def wake(self) -> float | None:
        """Wait until awake; the milliseconds this caller waited, or None if it was awake already. Raises
        WakeFailed when the wake it waited for failed."""
        self.touch()
        if self.awake:
            return None
        started = time.perf_counter()
        while not self.awake:
            if self.state is SleepState.FALLING_ASLEEP or self.state is SleepState.WAKING:
                transition = self._transition
                assert transition is not None
                # Shielded: a caller that gives up (a client hanging up) does not cancel the wake others wait for.
                try:
                    await asyncio.shield(transition)
                except WakeFailed:
                    raise
                except Exception as exc:  # noqa: BLE001 - the sleep failed: the state machine says awake again
                    logger.debug("idle sleep transition failed", exc_info=exc)
                continue
            # Asleep: this caller starts the one wake (the state says so at once); the others find it under way.
            self._set_state(SleepState.WAKING)
            self._transition = asyncio.get_running_loop().create_task(self._do_wake(), name="idle-wake")
        waited_ms = (time.perf_counter() - started) * 1000.0
        self.touch()
        return waited_ms

    # ------------------------------------------------------------------ the timer
    async def poll(self) -> bool:
        """Fall asleep when idle long enough and not busy; True when this call put the device to sleep. A busy device
        counts as a request: the idle time runs from the end of the last work, not its start."""
        if not self.awake or self._clock() - self.last_request < self.idle_s:
            return False
        if self._busy():
            self.touch()
            return False
        self._set_state(SleepState.FALLING_ASLEEP)
        self._transition = asyncio.get_running_loop().create_task(self._do_sleep(), name="idle-sleep")
        await asyncio.shield(self._transition)
        return self.state is SleepState.ASLEEP

    async def run(self) -> None:
        """Poll until cancelled, often enough to sleep within a quarter of the idle time (at most once a second)."""
        interval = min(max(self.idle_s / 4, 0.05), 1.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - the timer keeps running; the next poll tries again
                logger.exception("idle sleep poll failed")

    # ------------------------------------------------------------------ transitions
    async def _do_sleep(self) -> None:
        started = time.perf_counter()
        try:
            await self._sleep()
        except Exception:
            # Half asleep is worse than awake: wake what did sleep, and stay awake until the next idle period.
            logger.exception("idle sleep failed; waking what slept and staying awake")
            try:
                await self._wake()
            finally:
                self.touch()
                self._set_state(SleepState.AWAKE)
            raise
        self.sleeps += 1
        self._set_state(SleepState.ASLEEP)
        logger.info(
            "idle sleep: device freed",
            extra={
                "event": "idle_sleep",
                "idle_s": self.idle_s,
                "sleep_ms": round((time.perf_counter() - started) * 1000.0, 1),
            },
        )

    async def _do_wake(self) -> None:
        started = time.perf_counter()
        try:
            await self._wake()
        except Exception as exc:
            metrics.IDLE_WAKE_FAILURES.inc()
            self._set_state(SleepState.ASLEEP)
            logger.exception("idle wake failed; the next request tries again")
            raise WakeFailed(f"waking the device failed: {exc.__class__.__name__}: {exc}") from exc
        wake_ms = (time.perf_counter() - started) * 1000.0
        self.wakes += 1
        self.last_wake_ms = wake_ms
        metrics.IDLE_WAKE_SECONDS.observe(wake_ms / 1000.0)
        self.touch()
        self._set_state(SleepState.AWAKE)
        logger.info("idle wake: device back", extra={"event": "idle_wake", "wake_ms": round(wake_ms, 1)})

    def _set_state(self, state: SleepState) -> None:
        self.state = state
        for each in SleepState:
            metrics.IDLE_SLEEP_STATE.labels(state=each.value).set(1 if each is state else 0)


# ---------------------------------------------------------------------- what sleeping does to the runtime's models
def device_busy(engine: Any, scheduler: Any) -> bool:
    """Anything generating or decoding (an open stream, even one waiting for a socket's text): no sleep."""
    return bool(
        (engine is not None and engine.active_requests())
        or scheduler.active_streams
        or scheduler.pending_windows
        or scheduler.pending_model_calls
    )


def codec_modules(models: Iterable[Any]) -> list[nn.Module]:
    """The torch modules of the codec-side models (BiCodec, AP-BWE, the CTC aligners, the reference encoder with its
    speaker encoder): each model is a module, or holds its modules as attributes; a dict holds one per language."""
    found: list[nn.Module] = []
    for model in models:
        if model is None:
            continue
        if isinstance(model, dict):
            found.extend(codec_modules(model.values()))
        elif isinstance(model, nn.Module):
            found.append(model)
        else:
            found.extend(v for v in vars(model).values() if isinstance(v, nn.Module))
    return found


def move_codec(models: Iterable[Any], runner: Any, device: str) -> bool:
    """On the device thread (a scheduler model call): move the codec models to `device`. Going to the CPU drops the
    runner's CUDA graphs (they hold the models' device addresses) and returns the freed memory to the driver; coming
    back, True when the caller should capture them again."""
    leaving = device == "cpu"
    if leaving and getattr(runner, "graphs", None) is not None:
        runner.graphs = None
    for module in codec_modules(models):
        module.to(device)
    if leaving and torch.cuda.is_available():
        torch.cuda.empty_cache()
    return not leaving and hasattr(runner, "graphs") and runner.graphs is None
