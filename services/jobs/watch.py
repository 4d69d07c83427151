"""Progress streams (GET /v1/tts/jobs/{id}/events) share one poll per job.

However many clients follow one job, the process reads it from the store once per poll (without the chapters'
text: services/jobs/store.py) and hands every stream the same record; the poll stops when its last stream ends.
A key holds at most TTS_JOBS_EVENTS_PER_KEY streams open in this process (429 beyond). When the server shuts
down (SIGTERM), every stream ends with a final `shutdown` event at once, inside the graceful window, instead of
being cut by uvicorn when the window ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from services.errors import ServiceError
from services.jobs.records import JobRecord
from services.jobs.store import JobStore
from services.usage.shutdown import shutting_down

logger = logging.getLogger("services.jobs.watch")

# How often a stream looks for a shutdown itself while its job's poll is quiet (the poll tells it first, at its
# next tick, unless the store hangs).
SHUTDOWN_CHECK_S = 1.0
# The client's reconnection delay a `shutdown` event asks for (SSE `retry:`), milliseconds.
RECONNECT_MS = 5000


@dataclass(eq=False)
class _Poll:
    """One job's shared poll: the latest record, its version, and an event set at each new version."""

    job_id: str
    streams: int = 0
    version: int = 0
    job: JobRecord | None = None
    gone: bool = False  # the job was deleted (or never was): streams end
    tick: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class JobWatch:
    def __init__(
        self,
        store: JobStore,
        *,
        poll_s: float,
        per_key: int,
        view: Callable[[JobRecord], dict[str, Any]],
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self.per_key = per_key
        self.view = view
        self.polls: dict[str, _Poll] = {}
        self.open: Counter[str] = Counter()  # key id -> streams open
        self.reads = 0  # store reads by the polls (the bench counts them)
        self.closing = False

    def close(self) -> None:
        """The app is stopping: every stream ends with its final event."""
        self.closing = True
        for poll in self.polls.values():
            _advance(poll)

    def admit(self, key_id: str) -> None:
        """429 when the key already holds its cap of streams (checked before a stream starts; the stream counts
        itself once it runs, so a client gone before its first byte holds nothing)."""
        if self.open[key_id] >= self.per_key:
            raise ServiceError(
                "TOO_MANY_CONCURRENT_REQUESTS",
                f"At most {self.per_key} progress streams per key at once; close one, or poll "
                "GET /v1/tts/jobs/{id} instead.",
                headers={"Retry-After": "5"},
            )

    async def events(self, job_id: str, key_id: str) -> AsyncIterator[tuple[str, str]]:
        """(event, data) of one stream: `progress` with the job object at each change, then the job's final status
        once; or `shutdown` when the server stops first."""
        if self.open[key_id] >= self.per_key:  # streams that started together after one check
            yield (
                "error",
                json.dumps({"code": "TOO_MANY_CONCURRENT_REQUESTS", "message": "Too many streams."}),
            )
            return
        self.open[key_id] += 1
        poll = self._join(job_id)
        try:
            seen, last = -1, ""
            while True:
                if self.closing or shutting_down():
                    yield "shutdown", last or json.dumps({"id": job_id})
                    return
                if poll.version != seen:
                    seen = poll.version
                    job = poll.job
                    if poll.gone or (job is not None and job.key_id != key_id):
                        return  # deleted meanwhile: nothing more will happen
                    if job is not None:
                        data = json.dumps(self.view(job))
                        if data != last:
                            last = data
                            yield "progress", data
                        if job.final:
                            yield job.status, data
                            return
                tick = poll.tick
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tick.wait(), SHUTDOWN_CHECK_S)
        finally:
            self._leave(poll, key_id)

    def _join(self, job_id: str) -> _Poll:
        poll = self.polls.get(job_id)
        if poll is None:
            poll = self.polls[job_id] = _Poll(job_id)
            poll.task = asyncio.get_running_loop().create_task(self._poll(poll), name=f"job-watch-{job_id}")
        poll.streams += 1
        return poll

    def _leave(self, poll: _Poll, key_id: str) -> None:
        self.open[key_id] -= 1
        if self.open[key_id] <= 0:
            del self.open[key_id]
        poll.streams -= 1
        if poll.streams <= 0 and self.polls.get(poll.job_id) is poll:
            del self.polls[poll.job_id]
            if poll.task is not None:
                poll.task.cancel()

    async def _poll(self, poll: _Poll) -> None:
        while True:
            try:
                self.reads += 1
                job = await self.store.get(poll.job_id, None)
            except Exception:  # noqa: BLE001 - a store outage: the streams keep their last record
                logger.exception("job progress poll failed", extra={"job_id": poll.job_id})
            else:
                poll.job, poll.gone = job, job is None
                _advance(poll)
                if job is None or job.final:
                    return
            if shutting_down():  # SIGTERM: the streams end with their final event now
                _advance(poll)
                return
            await asyncio.sleep(self.poll_s)


def _advance(poll: _Poll) -> None:
    poll.version += 1
    tick, poll.tick = poll.tick, asyncio.Event()
    tick.set()
