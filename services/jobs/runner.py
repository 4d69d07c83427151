"""The process's job worker: claims jobs from the store, renders their chapters one at a time, writes the book.

One `JobRunner` per process (started and stopped by the app's lifespan). It claims a job only while the model is
ready and fewer than TTS_JOBS_MAX_CONCURRENT of its own run; a claim is for one chapter: the lease is given back
after it, and the next claim serves the key that waited longest (services/jobs/store.py), so keys take turns. While
a chapter renders, a heartbeat every TTS_JOBS_PROGRESS_S (at most a third of TTS_JOBS_LEASE_S) renews the lease
and stores the chapter's audio seconds so far. The job continues from its first chapter not done: a chapter cut
mid-way (this process died, or stopped) is rendered again from its start, its partial files replaced. A lost lease or a cancel
(DELETE, here or on another replica: the heartbeat sees it) cancels the chapter's task at once; finished chapters
stay. Refusals that pass by themselves (the device busy with live streams, the model reloading) are waited out;
a key out of credits fails the job with INSUFFICIENT_CREDITS, its finished chapters kept (`resume` queues it again).
When idle, it deletes the jobs that ended more than TTS_JOBS_RETENTION_S ago, their files first.

Held mode (`hold_with`, a Modal container): the runner claims only while a holder (`drain`, run inside an input the
autoscaler counts) is in flight here, so no chapter renders in a container Modal may scale down; `queued()` (a job
submitted or resumed) and `start()` ask for a holder through the hook (services/deployment/job_holds.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from services.errors import ServiceError, status_of
from services.jobs.records import JobRecord
from services.jobs.render import JobFiles, RenderedChapter, render_chapter
from services.jobs.store import JobStore
from services.keys.records import ApiKeyRecord, anonymous_record

if TYPE_CHECKING:
    from services.access import AccessServices
    from services.pipeline.speech import SpeechService

logger = logging.getLogger("services.jobs.runner")

# Refusals that pass by themselves: the chapter waits (at most this long between tries) and tries again.
WAIT_CODES = frozenset(
    {"SERVER_OVERLOADED", "MODEL_NOT_LOADED", "SERVICE_UNAVAILABLE", "GPU_FAULT", "RATE_LIMIT_EXCEEDED"}
)
MAX_WAIT_S = 30.0
# A chapter that fails on the server's side (a generation failure) is tried this many times before the job fails.
CHAPTER_ATTEMPTS = 2
# The idle loop looks for jobs past their retention at most this often.
SWEEP_INTERVAL_S = 60.0


class BookWriter(Protocol):
    def __call__(self, job: JobRecord, files: JobFiles) -> None: ...


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        speech: SpeechService,
        access: AccessServices,
        files: JobFiles,
        *,
        write_book: BookWriter,
        max_concurrent: int = 1,
        lease_s: float = 30.0,
        poll_s: float = 1.0,
        retention_s: float = 0.0,
        progress_s: float = 2.0,
        min_free_mb: int = 0,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.speech = speech
        self.access = access
        self.files = files
        self.write_book = write_book
        self.max_concurrent = max_concurrent
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.retention_s = retention_s  # 0: ended jobs are kept
        self.heartbeat_s = min(progress_s, lease_s / 3)
        self.min_free_mb = min_free_mb
        self._disk_full = False
        self.progress: dict[str, tuple[int, float]] = {}  # job id -> (running chapter, audio seconds so far)
        # Render seconds per audio second of the last chapter this process finished (any job): a new job's ETA.
        self.measured_rtf: float | None = None
        self._swept_at: float | None = None
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.running: dict[str, asyncio.Task[None]] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        self.held_only = False  # claim only while a holder (`drain`) runs here
        self._holds = 0
        self._on_queued: Callable[[], object] | None = None
        self._busy_at = -float("inf")  # loop time a job last ran here or was claimed

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """The claim loop on the running loop; a second call does nothing (a holder may start it first)."""
        if self._loop is not None:
            return
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop().create_task(self._claim_loop(), name="jobs-runner")
        if self._on_queued is not None:  # jobs a gone container left queued (or leased) find a holder
            self._on_queued()

    def hold_with(self, on_queued: Callable[[], object]) -> None:
        """Claim only while `drain` runs; `on_queued()` asks for a holder (a job was queued, or the runner started)."""
        self.held_only = True
        self._on_queued = on_queued

    def queued(self) -> None:
        """A job was submitted or resumed: look for it now, and ask for a holder where one is needed."""
        self.wake()
        if self._on_queued is not None:
            self._on_queued()

    async def drain(self, linger_s: float | None = None, max_s: float | None = None) -> bool:
        """Hold the runner open: claim and render until nothing ran or was claimed here for `linger_s` (default
        two leases: a job whose holder died is claimed once its lease runs out, with a lease to spare for the
        polls and the store's latency), or `max_s` passed.
        Returns whether work may be left (cut at `max_s` before the linger ran out): the caller asks for another
        holder, which returns after one linger if nothing is left."""
        linger = 2 * self.lease_s if linger_s is None else linger_s
        loop = asyncio.get_running_loop()
        began = loop.time()
        self._holds += 1
        self._busy_at = max(self._busy_at, began)
        self.wake()
        try:
            while True:
                now = loop.time()
                if self.running:
                    self._busy_at = now
                if max_s is not None and now - began >= max_s:
                    return True  # a job may be running, or between two chapters
                if now - self._busy_at >= linger or self._stopping:
                    return False
                await asyncio.sleep(min(self.poll_s, linger))
        finally:
            self._holds -= 1

    async def stop(self) -> None:
        """Stop claiming, cut the running chapters (refunded) and give their leases up, so the next process
        (a restart, another replica) resumes them at once."""
        self._stopping = True
        tasks = [t for t in (self._loop, *self.running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        """A job was queued: look for it now rather than at the next poll."""
        if self._wake is not None:
            self._wake.set()

    def cancel(self, job_id: str) -> None:
        """The job was cancelled in the store: stop its chapter now, if it runs here."""
        task = self.running.get(job_id)
        if task is not None:
            task.cancel()

    # ------------------------------------------------------------------ claiming
    async def _claim_loop(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                if (
                    self.speech.models.ready
                    and (self._holds > 0 or not self.held_only)
                    and len(self.running) < self.max_concurrent
                    and await self._room()
                ):
                    job = await self.store.claim(self.owner, self.lease_s)
                    if job is not None:
                        self._launch(job)
                        continue
                await self._sweep_when_due()
            except Exception:  # noqa: BLE001 - a store outage: try again at the next poll
                logger.exception("job claim failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _room(self) -> bool:
        """Whether the disk has room for another chapter (below TTS_JOBS_MIN_FREE_MB the queue waits)."""
        room = await asyncio.to_thread(self.files.has_room, self.min_free_mb)
        if not room and not self._disk_full:
            logger.warning("job disk nearly full: no chapter starts", extra={"min_free_mb": self.min_free_mb})
        self._disk_full = not room
        return room

    async def _sweep_when_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.retention_s > 0 and (self._swept_at is None or now - self._swept_at >= SWEEP_INTERVAL_S):
            self._swept_at = now
            await self.sweep()

    async def sweep(self) -> int:
        """Delete the jobs that ended more than `retention_s` ago; how many went."""
        removed = 0
        for job_id in await self.store.expired(self.retention_s):
            if await remove_job(self.store, self.files, job_id, None):
                removed += 1
        if removed:
            logger.info("expired jobs deleted", extra={"jobs": removed})
        return removed

    def _launch(self, job: JobRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._hold(job), name=f"job-{job.id}")
        self.running[job.id] = task
        self._busy_at = asyncio.get_running_loop().time()

        def done(finished: asyncio.Task[None]) -> None:
            if self.running.get(job.id) is finished:  # not the job's next run, resumed meanwhile
                del self.running[job.id]
            self._busy_at = asyncio.get_running_loop().time()  # the job's next chapter is claimable now
            self.wake()  # room for another job

        task.add_done_callback(done)

    async def _hold(self, job: JobRecord) -> None:
        """Run `job` while its lease is renewed; a lost lease or a cancel in the store cuts it."""
        work = asyncio.current_task()
        assert work is not None

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self.heartbeat_s)
                try:
                    held = await self.store.renew(job.id, self.owner, self.lease_s, self.progress.get(job.id))
                except Exception:  # noqa: BLE001 - keep the job; the lease still has two thirds to run
                    logger.exception("job lease renewal failed", extra={"job_id": job.id})
                    continue
                if not held:
                    work.cancel()
                    return

        beat = asyncio.get_running_loop().create_task(heartbeat())
        try:
            await run_job(job, self)
        except asyncio.CancelledError:
            if (
                self._stopping
            ):  # the chapter is pending again before the lease goes: the next holder starts it anew
                await _quietly(self._reset_running(job))
                await _quietly(self.store.release(job.id, self.owner))
                raise
            # Cancelled (DELETE) or the lease is gone: the store already says so. The cut chapter is reset while
            # the lease is still held: a resume (which waits for the lease) never meets this cleanup.
            await _quietly(self._reset_running(job))
            await _quietly(self.store.finish(job.id, self.owner, "cancelled"))
        except Exception:  # noqa: BLE001 - one job's bug must not stop the worker
            logger.exception("job failed", extra={"job_id": job.id})
            await _quietly(
                self.store.finish(
                    job.id, self.owner, "failed", error_code="INTERNAL_ERROR", error_message="The job failed."
                )
            )
        finally:
            beat.cancel()
            self.progress.pop(job.id, None)

    async def _reset_running(self, job: JobRecord) -> None:
        """A chapter cut mid-way is pending again, its unfinished files gone."""
        current = await self.store.get(job.id, None)
        if current is None or current.status not in ("cancelled", "queued") and not self._stopping:
            return  # another process holds it now: its chapters are its own
        for chapter in current.chapters:
            if chapter.status == "running":
                await self.store.set_chapter(job.id, chapter.index, "pending")
        for part in self.files.folder(job.id).glob("*.part"):  # a cut chapter's unfinished files
            part.unlink(missing_ok=True)

    async def key_of(self, job: JobRecord) -> ApiKeyRecord:
        """The job's key record as it is now (its credits), from the key store: the process running the job may
        not be the one that accepted it."""
        authenticator = self.access.authenticator
        if authenticator is None:
            return anonymous_record()
        record = await authenticator.store.get_by_hash(job.key_hash)
        if record is None or record.status != "active":
            raise ServiceError("KEY_SUSPENDED", "The job's API key is no longer active.", status=403)
        return record


async def run_job(job: JobRecord, runner: JobRunner) -> None:
    """Render the job's first chapter not done; then give the lease back for the next claim (another key's turn
    first, if one waits), or, with every chapter done, write the book and end the job."""
    store, owner = runner.store, runner.owner
    try:
        key = await runner.key_of(job)
    except ServiceError as exc:
        await store.finish(job.id, owner, "failed", error_code=exc.code, error_message=exc.message)
        return
    for chapter in job.chapters:
        if chapter.status == "done":
            continue
        await store.set_chapter(job.id, chapter.index, "running")

        def note(seconds: float, job_id: str = job.id, index: int = chapter.index) -> None:
            runner.progress[job_id] = (index, seconds)

        try:
            rendered = await _with_retries(
                functools.partial(
                    render_chapter,
                    job,
                    chapter,
                    speech=runner.speech,
                    access=runner.access,
                    key=key,
                    files=runner.files,
                    progress=note,
                )
            )
        except ServiceError as exc:
            await store.set_chapter(job.id, chapter.index, "failed")
            await store.finish(
                job.id,
                owner,
                "failed",
                error_code=exc.code,
                error_message=failure_message(exc, chapter.index),
            )
            logger.warning(
                "job chapter failed",
                extra={"job_id": job.id, "chapter": chapter.index, "error_code": exc.code},
            )
            return
        await store.set_chapter(
            job.id,
            chapter.index,
            "done",
            audio_seconds=rendered.audio_seconds,
            render_seconds=rendered.render_seconds,
            request_id=rendered.request_id,
        )
        if rendered.audio_seconds > 0:
            runner.measured_rtf = rendered.render_seconds / rendered.audio_seconds
        job = job.with_chapter(replace(chapter, status="done", audio_seconds=rendered.audio_seconds))
        if any(c.status != "done" for c in job.chapters):
            await store.release(job.id, owner)  # the next chapter waits for its turn
            return
    book = job.options.book_format is not None
    if book:
        try:
            await asyncio.to_thread(runner.write_book, job, runner.files)
        except Exception:  # noqa: BLE001 - the chapters stay; the job says the book is what failed
            logger.exception("job book failed", extra={"job_id": job.id})
            await store.finish(
                job.id,
                owner,
                "failed",
                error_code="BOOK_FAILED",
                error_message="Every chapter is done and downloadable, but the book could not be written.",
            )
            return
    await store.finish(job.id, owner, "done", book_done=book)
    logger.info("job done", extra={"job_id": job.id, "chapters": len(job.chapters)})


async def _with_retries(render: Callable[[], Coroutine[Any, Any, RenderedChapter]]) -> RenderedChapter:
    failures = 0
    while True:
        try:
            # Each attempt in a task of its own: the request id it sets for its log lines ends with it.
            return await asyncio.create_task(render())
        except ServiceError as exc:
            if exc.code in WAIT_CODES:
                await asyncio.sleep(min(MAX_WAIT_S, float(exc.retry_after or 1)))
                continue
            failures += 1
            if (exc.status or status_of(exc.code)) >= 500 and failures < CHAPTER_ATTEMPTS:
                continue
            raise


async def remove_job(store: JobStore, files: JobFiles, job_id: str, key_id: str | None) -> bool:
    """An ended job's row, then its files (only once no process holds the job: a cancelled chapter may still be
    stopping); False when the store has no such job."""
    if not await store.delete(job_id, key_id):
        return False
    await asyncio.to_thread(shutil.rmtree, files.folder(job_id), True)
    return True


def failure_message(exc: ServiceError, index: int) -> str:
    if exc.code == "INSUFFICIENT_CREDITS":
        return (
            f"The key ran out of credits at chapter {index}; the chapters before it are done and stay "
            "downloadable. Top the key up and resume the job."
        )
    return f"Chapter {index} failed: {exc.message}"


async def _quietly(step: Awaitable[object]) -> None:
    try:
        await step
    except Exception:  # noqa: BLE001 - bookkeeping after a cut; the lease expiry covers what it misses
        logger.exception("job bookkeeping failed")
