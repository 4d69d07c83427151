"""A device the engine and the codec share by time slices, as a GPU shares itself between two processes.

`DeviceTimeline` (bench/standin/cost_model.py) runs one call at a time: a codec call waits behind the engine step in
progress, and the reverse. On an H100 with the engine's load in a process of its own, the GPU sliced its time
instead: while both had work each got about half (the engine 0.52-0.57 of the device, the codec 0.46-0.49;
docs/decisions/gpu-time-slices.md), so a codec call took ~2.1x its cost and an engine step
~2.2x, and the two together kept the device's seconds.

`SlicedDeviceTimeline` models that: two lanes, the engine's (`llm`) and the codec's (`decode`, `sr`), each first come
first served within itself; while both lanes have a call in progress each progresses at half speed, alone at full
speed. A call's end depends on what arrives on the other lane meanwhile, so ends are found as they happen (a timer at
the next one), not fixed when the call starts. For the simulator's virtual clock only: `arrived` is not read (a
virtual loop is never late). The observer sees each call as its own seconds ending where it ended (the breakdown's
device seconds stay the calls' own; the intervals of the two lanes may overlap).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.device.device_layout import DEVICE_SHARINGS, DeviceSharing

# serial: `DeviceTimeline`; sliced: this module; overlapped: bench/sim/overlapped_device.py (one CUDA context). Which
# one a served layout gives: services/device/device_layout.py.
__all__ = ["DEVICE_SHARINGS", "DeviceSharing", "SlicedDeviceTimeline"]
EPS = 1e-9  # a nanosecond: what float time may leave of a call that has ended


@dataclass
class _Call:
    kind: str
    seconds: float
    remaining: float
    done: asyncio.Future[float]
    detail: Any = None


@dataclass
class SlicedDeviceTimeline:
    busy_seconds: dict[str, float] = field(default_factory=lambda: {"llm": 0.0, "decode": 0.0, "sr": 0.0})
    observer: Callable[[str, float, float, Any], None] | None = None

    def __post_init__(self) -> None:
        self._lanes: dict[str, deque[_Call]] = {"llm": deque(), "codec": deque()}
        self._at: float | None = None  # when the calls in progress were last advanced
        self._timer: asyncio.TimerHandle | None = None

    async def use(
        self, kind: str, seconds: float, *, arrived: float | None = None, detail: Any = None
    ) -> float:
        """Run a call of `seconds` (its own device time); returns the time it ended."""
        loop = asyncio.get_running_loop()
        self._advance(loop.time())
        call = _Call(kind, max(0.0, seconds), max(0.0, seconds), loop.create_future(), detail)
        lane = self._lanes["llm" if kind == "llm" else "codec"]
        lane.append(call)
        self._schedule(loop)
        return await asyncio.shield(call.done)

    @property
    def total_busy(self) -> float:
        return sum(self.busy_seconds.values())

    def run_seconds(self, seconds: float, arrived: float, end: float) -> float:
        """What CUDA events around a codec call read: its arrival to its end, since its lane starts it at once (the
        scheduler has one codec call in flight), stretched by whatever the engine ran meanwhile."""
        return end - arrived

    def _in_progress(self) -> list[_Call]:
        return [lane[0] for lane in self._lanes.values() if lane]

    def speed(self, running: int) -> float:
        """How fast each call in progress runs while `running` lanes have one: its share of the device."""
        return 1.0 / running

    def _advance(self, now: float) -> None:
        """Move the calls in progress on to `now`, each at its share of the device."""
        if self._at is not None and now > self._at:
            running = self._in_progress()
            for call in running:
                call.remaining -= (now - self._at) * self.speed(len(running))
        self._at = now

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        running = self._in_progress()
        if not running:
            return
        assert self._at is not None
        first_end = min(max(0.0, c.remaining) for c in running) / self.speed(len(running))
        self._timer = loop.call_at(self._at + first_end, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        self._advance(now)
        for lane in self._lanes.values():
            while lane and lane[0].remaining <= EPS:
                call = lane.popleft()
                self.busy_seconds[call.kind] = self.busy_seconds.get(call.kind, 0.0) + call.seconds
                if self.observer is not None:
                    self.observer(call.kind, now - call.seconds, now, call.detail)
                if not call.done.done():
                    call.done.set_result(now)
        self._schedule(loop)
