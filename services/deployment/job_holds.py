"""Long-form jobs render inside an input Modal counts, so the autoscaler never scales a container down under one.

Modal scales a container down only once it has held no input for its `scaledown_window`; a job rendering in the
background holds none. So in a Modal container the job runner claims only while a holder runs: the class's
`render_jobs` method, one Modal input, which drains the runner (`JobRunner.drain`: claim and render until nothing
was claimed or ran there for two leases) and returns. The web side asks for one through `JobHolds.request` when a job
is submitted or resumed and when the runner starts (jobs a gone container left); Modal's queue routes the holder to
a container with a free input slot, which renders the queued jobs while the input keeps it alive.

At most one holder per requesting container is in flight: a request while one runs only notes that another is due
once it returns (the job may have been queued after that holder's last claim). A holder cut short by its input
limit returns that work was left, and the next one is spawned at once. `spawn` is the thin adapter: in a Modal
container (app.py) it spawns `render_jobs` and waits for its result; tests hand in a stand-in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("services.deployment.job_holds")

# After a failed spawn (Modal's API unreachable), the next try waits this long: the jobs stay queued meanwhile.
RETRY_S = 5.0


class JobHolds:
    """Keeps one holder in flight while jobs wait. `spawn()`: runs one holder to its end and returns whether it
    left work (then another follows at once)."""

    def __init__(self, spawn: Callable[[], Awaitable[bool]], *, retry_s: float = RETRY_S) -> None:
        self.spawn = spawn
        self.retry_s = retry_s
        self.spawned = 0
        self._again = False
        self._task: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> bool:
        return self._task is not None and not self._task.done()

    def request(self) -> None:
        """A job was queued (or the runner started): a holder now, or one more after the one in flight."""
        if self.in_flight:
            self._again = True
            return
        self._again = False
        self._task = asyncio.get_running_loop().create_task(self._hold(), name="job-holder")

    async def _hold(self) -> None:
        while True:
            self.spawned += 1
            try:
                left = await self.spawn()
            except Exception:  # noqa: BLE001 - the jobs stay queued; try again shortly
                logger.exception("spawning the job holder failed")
                await asyncio.sleep(self.retry_s)
                continue
            if not (left or self._again):
                return
            self._again = False

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
