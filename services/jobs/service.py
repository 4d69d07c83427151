"""The jobs service: what the routes call (submit, read, list, cancel, files, progress events), and the store, the
files and the worker it owns for the process."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audio.encoders import check_format_rate
from processing.voice_segments import voice_names
from services.errors import ServiceError
from services.jobs.book import BookChapter, check_book_format, write_book
from services.jobs.records import ChapterRecord, JobOptions, JobRecord, job_view
from services.jobs.render import JobFiles, lexicon_of, locators_of
from services.jobs.runner import JobRunner, remove_job
from services.jobs.store import JobStore, SqliteJobStore
from services.jobs.store_postgres import PostgresJobStore
from services.jobs.submission import JobSubmission, read_submitted
from services.jobs.tags import find_cover, save_cover
from services.jobs.watch import JobWatch
from services.keys.records import ApiKeyRecord
from services.pipeline.speech import SpeechRequest, SpeechService
from services.pipeline.synthesis import SamplingOptions
from services.usage.credits import credits_for_text

if TYPE_CHECKING:
    from services.access import AccessServices
    from shared.settings import Settings

logger = logging.getLogger("services.jobs")

CHAPTER_FORMATS = ("mp3", "wav", "flac", "opus", "aac")
BOOK_FORMATS = ("m4b", "mp3")
# How often a job's shared progress poll reads the store (which another replica may be writing).
EVENTS_POLL_S = 0.5
# A running job whose holder has been quiet for this many heartbeats shows `stalled`.
STALL_HEARTBEATS = 5
# What a job id looks like: anything else is not found without asking the store.
JOB_ID = re.compile(r"job_[0-9a-f]{32}")
MAX_TITLE_CHARS = 500
# Distinct `[voice:NAME]` voices one job may name (each is resolved at submission).
MAX_JOB_VOICES = 32


@dataclass(frozen=True)
class ChapterText:
    """A chapter as the document reader found it."""

    title: str
    text: str


def write_job_book(job: JobRecord, files: JobFiles) -> None:
    """The whole work in one file with chapter marks (blocking; services/jobs/book.py muxes it)."""
    fmt = job.options.book_format or "m4b"
    chapters = [BookChapter(c.title, files.chapter_wav(job.id, c.index)) for c in job.chapters]
    write_book(
        chapters,
        files.book(job.id, fmt),
        fmt=fmt,  # type: ignore[arg-type]
        title=job.title,
        author=job.options.author,
        cover=find_cover(files.folder(job.id)),
    )


def split_long(chapters: list[ChapterText], limit: int) -> list[ChapterText]:
    """Chapters longer than one request may be (TTS_MAX_TEXT_CHARS) become parts, cut at paragraph or sentence
    ends where there is one in the last fifth of the part."""
    out: list[ChapterText] = []
    for chapter in chapters:
        text, part = chapter.text, 1
        while len(text) > limit:
            window = text[:limit]
            cut = max(window.rfind("\n\n"), window.rfind(". "), window.rfind("\n"))
            cut = cut + 1 if cut >= limit * 4 // 5 else limit
            out.append(ChapterText(f"{chapter.title} ({part})", text[:cut].strip()))
            text, part = text[cut:].lstrip(), part + 1
        out.append(ChapterText(f"{chapter.title} ({part})", text.strip()) if part > 1 else chapter)
    return out


class JobService:
    def __init__(self, settings: Settings, store: JobStore, runner: JobRunner, files: JobFiles) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.files = files
        self.stall_after_s = STALL_HEARTBEATS * runner.heartbeat_s
        self.watch = JobWatch(
            store, poll_s=EVENTS_POLL_S, per_key=settings.jobs.jobs_events_per_key, view=self.view
        )

    @classmethod
    def from_settings(cls, settings: Settings, speech: SpeechService, access: AccessServices) -> JobService:
        """PostgreSQL where the service has it (jobs move with their database), else a SQLite file in the jobs
        directory."""
        jobs = settings.jobs
        files = JobFiles(Path(jobs.jobs_dir))
        pool = access.databases.postgres
        store: JobStore = (
            PostgresJobStore(pool) if pool is not None else SqliteJobStore(files.root / "jobs.sqlite3")
        )
        runner = JobRunner(
            store,
            speech,
            access,
            files,
            write_book=write_job_book,
            max_concurrent=jobs.jobs_max_concurrent,
            lease_s=jobs.jobs_lease_s,
            retention_s=jobs.jobs_retention_s,
            progress_s=jobs.jobs_progress_s,
            min_free_mb=jobs.jobs_min_free_mb,
        )
        return cls(settings, store, runner, files)

    async def start(self) -> None:
        self.runner.start()

    async def close(self) -> None:
        self.watch.close()
        await self.runner.stop()
        await self.store.close()

    def view(self, job: JobRecord) -> dict[str, Any]:
        """The job object the API shows (a job whose worker went quiet: `stalled`); before a job has measured its
        own rendering rate, its ETA assumes the one this process measured last, else TTS_JOBS_ETA_RTF."""
        eta_rtf = self.runner.measured_rtf or self.settings.jobs.jobs_eta_rtf
        return job_view(job, stall_after_s=self.stall_after_s, eta_rtf=eta_rtf)

    # ------------------------------------------------------------------ routes
    def options(
        self,
        *,
        voice: str | None,
        fmt: str,
        book_format: str | None,
        sample_rate: int,
        speed: float | None,
        lexicon: tuple[tuple[str, str, bool, bool], ...] = (),
        dictionaries: tuple[tuple[str, str | None], ...] = (),
    ) -> JobOptions:
        if fmt not in CHAPTER_FORMATS:
            raise ServiceError(
                "INVALID_FORMAT", f"Invalid 'format': {fmt!r}; one of {', '.join(CHAPTER_FORMATS)}.", "format"
            )
        if book_format is not None and book_format not in BOOK_FORMATS:
            raise ServiceError(
                "INVALID_FORMAT",
                f"Invalid 'book_format': {book_format!r}; one of {', '.join(BOOK_FORMATS)} or null.",
                "book_format",
            )
        try:
            check_format_rate(fmt, sample_rate)
            check_format_rate("wav", sample_rate)
            if book_format is not None:
                check_book_format(book_format, sample_rate)
        except ValueError as exc:
            raise ServiceError("VALIDATION_ERROR", f"Invalid 'sample_rate': {exc}", "sample_rate") from None
        if speed is not None and not 0.5 <= speed <= 2.0:
            raise ServiceError("VALIDATION_ERROR", "Invalid 'speed': between 0.5 and 2.0.", "speed")
        return JobOptions(
            voice=voice,
            format=fmt,
            book_format=book_format,
            sample_rate=sample_rate,
            speed=speed,
            lexicon=lexicon,
            dictionaries=dictionaries,
        )

    async def submit(self, key: ApiKeyRecord, speech: SpeechService, submission: JobSubmission) -> JobRecord:
        """A submitted job for `key`: its fields checked, its document read into chapters, then queued; refused
        (400/403/413) before anything is stored when it cannot run."""
        self.check_credits(key)  # before the document is read
        options = self.options(
            voice=submission.voice,
            fmt=submission.format,
            book_format=submission.book_format,
            sample_rate=submission.sample_rate,
            speed=submission.speed,
            lexicon=submission.lexicon,
            dictionaries=submission.dictionaries,
        )
        document = await read_submitted(submission, self.settings.jobs, key.key_id)
        chapters = [ChapterText(c.title, c.text) for c in document.chapters]
        options = replace(options, author=submission.author or document.author)
        cover = (document.cover.data, document.cover.media_type) if document.cover else None
        return await self.queue(key, speech, chapters, options, submission.title or document.title, cover)

    async def queue(
        self,
        key: ApiKeyRecord,
        speech: SpeechService,
        chapters: list[ChapterText],
        options: JobOptions,
        title: str | None,
        cover: tuple[bytes, str] | None = None,
    ) -> JobRecord:
        """Queue a job for `key`; refused (400/413) before anything is stored when it cannot run."""
        chapters = [c for c in chapters if c.text.strip()]
        if not chapters:
            raise ServiceError("VALIDATION_ERROR", "The document has no text to speak.", "text")
        total = sum(len(c.text) for c in chapters)
        limit = self.settings.jobs.jobs_max_chars
        if total > limit:
            raise ServiceError(
                "TEXT_TOO_LONG",
                f"Invalid 'text': at most {limit} characters per job on this deployment, got {total}.",
                "text",
            )
        self.check_credits(key, total)  # what the key cannot pay for is refused now, not at its first chapter
        probe = SpeechRequest(
            text="",
            voice=options.voice,
            audio_format="pcm",
            sample_rate=options.sample_rate,
            sampling=SamplingOptions.with_defaults(self.settings),
            voice_field="voice",
            dictionaries=locators_of(options),
            lexicon=lexicon_of(options),
        )
        await speech.lexicon(
            probe, key.key_id
        )  # an unknown dictionary is refused now, as an unknown voice is
        if title is not None and len(title) > MAX_TITLE_CHARS:
            raise ServiceError(
                "VALIDATION_ERROR", f"Invalid 'title': at most {MAX_TITLE_CHARS} characters.", "title"
            )
        names = list(dict.fromkeys(name for c in chapters for name in voice_names(c.text)))
        if len(names) > MAX_JOB_VOICES:
            raise ServiceError(
                "VALIDATION_ERROR",
                f"Invalid 'text': at most {MAX_JOB_VOICES} [voice:NAME] voices per job.",
                "text",
            )
        if speech.models.ready:  # every voice a chapter names exists now, not when that chapter renders
            for name in (options.voice, *names):
                await speech.voice(replace(probe, voice=name), key.key_id)
        await self._check_room(key, total)
        parts = split_long(chapters, self.settings.limits.max_text_chars)
        job = JobRecord(
            id=f"job_{uuid.uuid4().hex}",
            key_id=key.key_id,
            key_hash=key.key_hash,
            title=title,
            options=options,
            created_at=time.time(),
            chapters=tuple(
                ChapterRecord(index=i + 1, title=c.title, text=c.text) for i, c in enumerate(parts)
            ),
        )
        if cover is not None:  # (picture, media type), kept beside the chapters for the book's tags
            await asyncio.to_thread(save_cover, self.files.folder(job.id), *cover)
        await self.store.create(job)
        self.runner.queued()
        logger.info(
            "job queued",
            extra={"job_id": job.id, "key_id": key.key_id, "chapters": len(parts), "characters": total},
        )
        return job

    def check_credits(self, key: ApiKeyRecord, characters: int = 0) -> None:
        """Credits on, a key queues only a job its balance pays for at the charge's rule (1 credit a character of
        text, services/usage/credits.py): refused before anything is stored, not at its first chapter. With no
        credits left, refused before its document is even read (`characters` 0)."""
        balance = key.credit_balance
        if not self.settings.usage.credits_enabled or balance is None:
            return
        if balance <= 0:
            raise ServiceError(
                "INSUFFICIENT_CREDITS",
                "This key has no credits left; top it up before queueing a job.",
                status=403,
            )
        needed = credits_for_text(characters)
        if needed > balance:
            raise ServiceError(
                "INSUFFICIENT_CREDITS",
                f"This job costs about {needed} credits (1 credit per character of text) and the key has "
                f"{balance}; shorten the document or top up the key.",
                status=403,
            )

    async def _check_room(self, key: ApiKeyRecord, characters: int) -> None:
        """Nothing is stored unchecked: a key's characters not yet
        rendered (in every job it keeps: a failed or cancelled job may be resumed) and its stored bytes (files and
        the text of every kept job, failed or not, until it is deleted or expires) stay under their quotas; a nearly
        full disk takes no job."""
        jobs = self.settings.jobs
        queued = await self.store.queued_characters(key.key_id)
        if queued + characters > jobs.jobs_queued_chars_per_key:
            raise ServiceError(
                "TEXT_TOO_LONG",
                f"Invalid 'text': this key's jobs hold {queued} characters not yet rendered; at most "
                f"{jobs.jobs_queued_chars_per_key} at once (wait for them, or cancel and delete one).",
                "text",
            )
        files = await asyncio.to_thread(self.files.size, await self.store.job_ids(key.key_id))
        stored = files + await self.store.stored_text_bytes(key.key_id)
        if stored > jobs.jobs_stored_mb_per_key * 1_000_000:
            raise ServiceError(
                "PAYLOAD_TOO_LARGE",
                f"This key's jobs hold {stored // 1_000_000} MB of audio and text, over its "
                f"{jobs.jobs_stored_mb_per_key} MB; delete jobs (DELETE /v1/tts/jobs/{{id}}) first.",
                status=413,
            )
        if not await asyncio.to_thread(self.files.has_room, jobs.jobs_min_free_mb):
            raise ServiceError(
                "SERVICE_UNAVAILABLE",
                "The server's disk for job files is nearly full; try again later.",
                retry_after=60,
            )

    async def job(self, job_id: str, key_id: str) -> JobRecord:
        job = await self.store.get(job_id, key_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise ServiceError("NOT_FOUND", f"No job {job_id[:40]!r} for this key.", "job_id")
        return job

    async def jobs(self, key_id: str) -> list[JobRecord]:
        return await self.store.list(key_id)

    async def cancel_or_remove(self, job_id: str, key_id: str) -> JobRecord | None:
        """Cancel a queued or running job (the job, cancelled); remove an ended one with its files (None). A job
        cancelled a moment ago whose chapter is still stopping is left as it is (the job)."""
        job = await self.job(job_id, key_id)
        if job.final:
            if await remove_job(self.store, self.files, job_id, key_id):
                logger.info("job deleted", extra={"job_id": job_id, "key_id": key_id})
                return None
            return await self.job(job_id, key_id)
        cancelled = await self.store.cancel(job_id, key_id)
        if cancelled is None:
            raise ServiceError("NOT_FOUND", f"No job {job_id!r} for this key.", "job_id")
        self.runner.cancel(job_id)
        return cancelled

    async def resume(self, job_id: str, key_id: str) -> JobRecord:
        """Queue a failed or cancelled job again: it continues from its first chapter not done (the chapters done
        stay, and are never rendered or charged again)."""
        job = await self.job(job_id, key_id)
        if job.status not in ("failed", "cancelled"):
            raise ServiceError(
                "JOB_NOT_RESUMABLE",
                f"Job {job_id!r} is {job.status}: only a failed or cancelled job can be resumed.",
                "job_id",
            )
        resumed = await self.store.resume(job_id, key_id)
        if resumed is None:
            raise ServiceError("NOT_FOUND", f"No job {job_id!r} for this key.", "job_id")
        if resumed.status != "queued":
            raise ServiceError(
                "JOB_NOT_RESUMABLE",
                f"Job {job_id!r} is still stopping; resume it again in a few seconds.",
                "job_id",
            )
        self.runner.queued()
        logger.info("job resumed", extra={"job_id": job_id, "key_id": key_id})
        return resumed

    async def chapter_file(self, job_id: str, key_id: str, index: int) -> Path:
        job = await self.job(job_id, key_id)
        chapter = next((c for c in job.chapters if c.index == index), None)
        if chapter is None or chapter.status != "done":
            raise ServiceError(
                "NOT_FOUND", f"Chapter {index} of job {job_id!r} is not done (or does not exist).", "index"
            )
        return self.files.chapter_file(job.id, index, job.options.format)

    async def book_file(self, job_id: str, key_id: str) -> tuple[Path, str]:
        job = await self.job(job_id, key_id)
        if not job.book_done or job.options.book_format is None:
            raise ServiceError("NOT_FOUND", f"Job {job_id!r} has no book yet.", "job_id")
        return self.files.book(job.id, job.options.book_format), job.options.book_format

    async def events(self, job_id: str, key_id: str) -> AsyncIterator[tuple[str, str]]:
        """(event, data) for a server-sent-events stream (services/jobs/watch.py); 404 for another key's job and
        429 past the key's open streams, before the stream starts."""
        await self.job(job_id, key_id)
        self.watch.admit(key_id)
        return self.watch.events(job_id, key_id)
