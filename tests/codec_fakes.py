"""Fakes for the codec scheduler's tests: a clock the test sets, a runner whose calls cost time on it, and a stream
with a playback clock."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from services.device import CodecScheduler, DecodeWindow, PlaybackClock, StreamHandle
from services.device.calls import Call
from services.device.telemetry import SchedulerStats

T = TypeVar("T")


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class RecordingRunner:
    """Records every call; each one advances the fake clock by `cost` (a model call by `model_cost`) and reports it as
    its device seconds. Decode rows come back filled with their first id (a window's tag), SR rows with zeros, each of
    its kept length. `log`: every codec call (its first row's tag) and model call ("model"), in the order they ran."""

    def __init__(
        self, clock: FakeClock, cost: float = 0.01, hop: int = 320, model_cost: float = 0.02
    ) -> None:
        self.clock, self.cost, self.hop, self.model_cost = clock, cost, hop, model_cost
        self.calls: list[Call] = []
        self.log: list[int | str] = []

    async def run_timed(self, call: Call) -> tuple[list[np.ndarray], float]:
        return await self.run(call), self.cost

    async def run_model_call(self, fn: Callable[[], T]) -> tuple[T, float]:
        await asyncio.sleep(0)
        self.clock.now += self.model_cost
        result = fn()
        self.log.append("model")
        return result, self.model_cost

    def close(self) -> None:
        return None

    async def run(self, call: Call) -> list[np.ndarray]:
        self.calls.append(call)
        self.log.append(int(call.windows[0].ids[0]) if call.kind == "decode" else -1)
        await asyncio.sleep(0)
        self.clock.now += self.cost
        out = []
        for w in call.windows:
            n = (w.keep_end - w.keep_start) * (self.hop if call.kind == "decode" else 1)
            out.append(np.full(n, float(w.ids[0]) if call.kind == "decode" else 0.0, np.float32))
        return out


class GatedRunner(RecordingRunner):
    """Holds every codec call until the test opens `gate`, and every model call while `model_gate` is closed (open
    at first)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.gate = asyncio.Event()
        self.model_gate = asyncio.Event()
        self.model_gate.set()

    async def run(self, call: Call) -> list[np.ndarray]:
        await self.gate.wait()
        return await super().run(call)

    async def run_model_call(self, fn: Callable[[], T]) -> tuple[T, float]:
        await self.model_gate.wait()
        return await super().run_model_call(fn)


def window(n: int, tag: int = 0) -> DecodeWindow:
    """A decode window of `n` ids, all `tag`, every token kept."""
    return DecodeWindow(ids=np.full(n, tag, np.int32), d_vector=None, keep_start=0, keep_end=n)


def played(sched: CodecScheduler) -> tuple[StreamHandle, PlaybackClock]:
    """A stream with a playback clock on the scheduler's clock, arriving now (as the synthesis job opens one)."""
    playback = PlaybackClock(sched.clock(), clock=sched.clock)
    return sched.open_stream(playback), playback


class FiguresScheduler:
    """What `Admission` reads of the codec scheduler, set by hand: the clock (`now`), the open streams and the settled
    among them, the cumulative device seconds and kept tokens (`stats`), what the listeners keep once the codec's queue
    drains (`headroom`); a device never busy, never missing."""

    def __init__(self, streams: int = 0) -> None:
        self.now = 0.0
        self.active_streams = streams
        self.settled_streams = 0  # of them, past their first second of audio
        self.stats = SchedulerStats()
        self.headroom = -math.inf

    def clock(self) -> float:
        return self.now

    def busy_ratio(self) -> float:
        return 0.0

    def recent_misses(self, grace_s: float = 0.0) -> int:
        return 0

    def worst_recent_miss(self, grace_s: float = 0.0) -> float | None:
        return None

    def drain_headroom(self) -> float:
        return self.headroom  # what listeners keep once the codec's queue drains (-inf: nothing measured)
