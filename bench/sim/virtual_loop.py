"""An asyncio event loop whose clock is virtual: when nothing is ready to run, time jumps to the next timer.

The real async code (the codec scheduler, admission, `asyncio.sleep` in the stand-in device) runs unchanged; a
wait of 20 ms costs no wall time. The loop's selector never blocks: when asked to wait `timeout` seconds for I/O
it first polls the real selector (the loop's own wake-up pipe lives there), and if nothing is ready it advances
the clock by `timeout` and reports no events. Waiting forever with nothing scheduled is a deadlock and raises.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self.now += seconds


class DeadlockError(RuntimeError):
    """Every task waits and no timer is pending: on a virtual clock nothing could ever wake them."""


class _VirtualSelector(selectors.BaseSelector):
    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:
            raise DeadlockError("virtual clock: every task is waiting and no timer is pending")
        self._clock.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """`time()` is the virtual clock; see the module doc."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock or VirtualClock()
        super().__init__(selector=_VirtualSelector(self.clock))
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self.clock.now


def run_virtual(main: Callable[[], Awaitable[T]], *, clock: VirtualClock | None = None) -> T:
    """Run `main()` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop(clock)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
