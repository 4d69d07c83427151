"""A container's input slots follow admission's headroom, so the fleet's router sends new work where there is room.

Modal routes an input once: a container with a free input slot fetches it from the function's queue (its
`max_inputs` slots), and the autoscaler adds containers while inputs wait in that queue. A container whose admission
refuses still has free slots, so without this it keeps fetching inputs it can only answer 503, reads as under its
target to the autoscaler, and a client's retry likely lands on it again. So while admission refuses for capacity,
the gate lowers the container's slots to `closed_slots` (1: the streams under way keep running, no new input is
fetched while one is open); new inputs then wait in Modal's queue, where a container with room takes them and the
backlog makes the autoscaler add one. Once admission would admit a stream again (polled every `poll_s`, and not
before `min_closed_s`, the Retry-After its refusals carry), the slots go back to `open_slots`.

The input that found the container full was already fetched: it is refused (503 SERVER_OVERLOADED, Retry-After 1)
and the client's retry (the OpenAI SDK retries a 503 twice by default, after its Retry-After) goes through Modal's
queue to another container. `set_slots` is the thin adapter: `modal.experimental.set_local_input_concurrency` in a
Modal container (app.py); the two-replica test and bench hand the count to their local router instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("services.deployment.input_gate")

POLL_S = 0.1
# At least the Retry-After of admission's refusals: a client retrying after it finds the gate still closed here.
MIN_CLOSED_S = 1.0


class InputGate:
    """Closes the container's input slots on admission's capacity refusals, opens them on its headroom.

    `admission`: returns the runtime's `Admission` now (None while it has none: the gate waits; the runtime may
    rebuild it); the gate reads its `last_capacity_refusal` and `has_headroom()`. `set_slots(n)`: the thin adapter
    that tells the router how many inputs this container may hold."""

    def __init__(
        self,
        admission: Callable[[], Any],
        set_slots: Callable[[int], object],
        *,
        open_slots: int,
        closed_slots: int = 1,
        poll_s: float = POLL_S,
        min_closed_s: float = MIN_CLOSED_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.admission = admission
        self.set_slots = set_slots
        self.open_slots = open_slots
        self.closed_slots = closed_slots
        self.poll_s = poll_s
        self.min_closed_s = min_closed_s
        self.clock = clock
        self.is_open = True
        self.closings = 0
        self._watched: Any = None
        self._seen_refusal = -math.inf
        self._closed_at = -math.inf
        self._task: asyncio.Task[None] | None = None

    def check(self) -> None:
        """One poll: close on a capacity refusal since the last poll, open once admission has headroom again."""
        admission = self.admission()
        if admission is None:
            return
        refusal = admission.last_capacity_refusal
        if admission is not self._watched:  # a rebuilt admission (the runtime reloaded): its past is not news
            if self._watched is not None:
                self._seen_refusal = refusal
            self._watched = admission
        if refusal != self._seen_refusal:
            self._seen_refusal = refusal
            self._closed_at = self.clock()
            if self.is_open:
                self._set(False)
            return
        if (
            not self.is_open
            and self.clock() - self._closed_at >= self.min_closed_s
            and admission.has_headroom()
        ):
            self._set(True)

    def _set(self, open_: bool) -> None:
        slots = self.open_slots if open_ else self.closed_slots
        try:
            self.set_slots(slots)
        except Exception:  # noqa: BLE001 - the router's signal is best effort; admission still refuses what it must
            logger.exception("setting the container's input slots failed")
            return
        self.is_open = open_
        self.closings += not open_
        logger.info(
            "input slots %s", "opened" if open_ else "closed", extra={"event": "input_gate", "slots": slots}
        )

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.poll_s)

    def start(self) -> asyncio.Task[None]:
        """The poll loop on the running loop (admission's: the serving loop)."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="input-gate")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def modal_set_slots(slots: int) -> None:
    """The Modal adapter: the container's local input concurrency (disables Modal's own dynamic concurrency between
    target_inputs and max_inputs, which the gate now sets: admission decides). In-progress inputs are not cut."""
    import modal.experimental

    modal.experimental.set_local_input_concurrency(slots)
