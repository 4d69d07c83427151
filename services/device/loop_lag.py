"""The event loop's own lateness, so that admission does not read it as the device's.

A window's deadline is judged on the event loop: its tokens reach the scheduler through the loop, its call is
dispatched and its end is seen there. When the loop itself runs late (the host's CPU is short: another process takes
the cores, a long callback holds the loop), a window can end past its deadline with the device idle the whole time:
the miss is the host's, and refusing new streams for it (admission's rule 1) says the device is full when it is not.
The stand-in device shows it most (its calls are sleeps of a GPU's measured length, so a late loop is all there is
to a miss), but a GPU server's loop stalls the same way.

`LoopLag` measures the stalls: while streams are open a probe sleeps `interval_s` at a time and records each wake-up
that came late as a stall from when it was due to when it ran (at least `min_stall_s`: a loop busy with its own
work delays a callback by a millisecond or so, which is the service's normal cost, not a stall). The scheduler
takes the stalls within `lookback_s` before a missed deadline up to the call's end off that call's lateness
(`CodecScheduler._account`): what is left is the device's. A stall is counted from its due time only, so the probe
never measures more stall than there was; misses larger than the stalls around them still count.

On a virtual clock (bench.sim.load) the probe never wakes late: nothing changes there."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class LoopLag:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        interval_s: float = 0.01,
        min_stall_s: float = 0.005,
        lookback_s: float = 0.25,
        memory_s: float = 5.0,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.interval_s = interval_s
        self.min_stall_s = min_stall_s
        self.lookback_s = lookback_s
        self.memory_s = memory_s
        self._stalls: deque[tuple[float, float]] = deque()  # (due, woke), oldest first
        self._task: asyncio.Task[None] | None = None
        self.stalls = 0  # stalls recorded since start
        self.stalled_seconds = 0.0

    def note(self, due: float, woke: float) -> None:
        """A callback due at `due` ran at `woke`."""
        if woke - due >= self.min_stall_s:
            self._stalls.append((due, woke))
            self.stalls += 1
            self.stalled_seconds += woke - due
        while self._stalls and self._stalls[0][1] < woke - self.memory_s:
            self._stalls.popleft()

    def stalled(self, start: float, end: float) -> float:
        """Seconds the loop stood stalled between `start` and `end`."""
        return sum(max(0.0, min(end, woke) - max(start, due)) for due, woke in self._stalls)

    def excused(self, deadline: float, ended: float) -> float:
        """The part of a lateness `ended - deadline` the loop's stalls account for: those from `lookback_s` before
        the deadline (the window's tokens and call were on their way then) to the end."""
        return self.stalled(deadline - self.lookback_s, ended)

    def run_while(self, active: Callable[[], bool]) -> None:
        """Probe the running loop while `active()` holds (a no-op while a probe runs on this loop)."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._task = loop.create_task(self._probe(active), name="loop-lag-probe")

    async def _probe(self, active: Callable[[], bool]) -> None:
        while active():
            due = self.clock() + self.interval_s
            await self.sleep(self.interval_s)
            self.note(due, self.clock())

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
