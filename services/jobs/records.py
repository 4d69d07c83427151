"""A job and its chapters as stored, and the job object the API shows (docs/api/jobs.md)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
# A running job whose holder has not written for this long is shown `stalled` (its process likely died) until its
# lease expires and a worker takes it again; the holder writes every TTS_JOBS_PROGRESS_S (2 s by default).
STALL_AFTER_S = 10.0
# Characters a voice speaks in a second of audio at speed 1 (English narration runs 13-16): how far into its text
# the running chapter is, from the audio it has so far, before any chapter has measured the real figure.
SPOKEN_CHARS_PER_S = 14.0
# Seconds of rendering per second of audio that a job's first estimate assumes where the service has measured none
# (TTS_JOBS_ETA_RTF): real time, which a GPU beats and a loaded CPU host may not.
ETA_RTF = 1.0
ChapterStatus = Literal["pending", "running", "done", "failed"]
FINAL_STATUSES: frozenset[str] = frozenset({"done", "failed", "cancelled"})


@dataclass(frozen=True)
class JobOptions:
    """How every chapter of a job is spoken and written."""

    voice: str | None = None
    format: str = "mp3"  # each chapter's file
    book_format: str | None = "m4b"  # the whole work with chapter marks; None: no book
    sample_rate: int = 24000
    speed: float | None = None
    # Alias rules for every chapter: (text, alias, case_sensitive, word_boundaries), as a request's `lexicon`.
    lexicon: tuple[tuple[str, str, bool, bool], ...] = ()
    # The key's stored pronunciation dictionaries: (id, version id or None), as `pronunciation_dictionary_locators`.
    dictionaries: tuple[tuple[str, str | None], ...] = ()
    author: str | None = (
        None  # the book's author, in its tags and the chapter files' (the title is the job's)
    )

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobOptions:
        fields = json.loads(text)
        for name in ("lexicon", "dictionaries"):  # JSON has lists; the record keeps tuples
            fields[name] = tuple(tuple(item) for item in fields.get(name, ()))
        return cls(**fields)


@dataclass(frozen=True)
class ChapterRecord:
    index: int
    title: str
    text: str
    status: ChapterStatus = "pending"
    audio_seconds: float | None = None
    render_seconds: float | None = None  # wall time its rendering took (the ETA's measured rate)
    request_id: str | None = None  # the request-log record of its rendering (and its charge)
    length: int | None = None  # its characters, where the store read the chapter without its text

    @property
    def characters(self) -> int:
        return len(self.text) if self.length is None else self.length


@dataclass(frozen=True)
class JobRecord:
    id: str
    key_id: str
    key_hash: str  # to find the key record again when another process resumes the job (its credits)
    title: str | None
    options: JobOptions
    status: JobStatus = "queued"
    created_at: float = 0.0  # epoch seconds
    error_code: str | None = None
    error_message: str | None = None
    book_done: bool = False
    finished_at: float | None = (
        None  # epoch seconds it ended (done, failed, cancelled): retention counts from it
    )
    chapters: tuple[ChapterRecord, ...] = field(default=())
    lease_owner: str | None = None  # the process rendering it; None: nobody (queued, or waiting for its turn)
    lease_expires: float = 0.0  # epoch seconds: after this, any worker may take the job
    heartbeat_at: float | None = None  # epoch seconds of the holder's last write (claim, progress, renewal)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def with_chapter(self, chapter: ChapterRecord) -> JobRecord:
        chapters = tuple(chapter if c.index == chapter.index else c for c in self.chapters)
        return replace(self, chapters=chapters)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def shown_status(job: JobRecord, now: float, stall_after_s: float = STALL_AFTER_S) -> str:
    """The status the API shows: a running job nobody holds waits for its turn (`queued`); one whose holder went
    quiet is `stalled` (a worker died: the job is taken again once its lease expires)."""
    if job.status != "running":
        return job.status
    if job.lease_owner is None:
        return "queued"
    if job.lease_expires < now or (job.heartbeat_at is not None and now - job.heartbeat_at > stall_after_s):
        return "stalled"
    return "running"


def job_view(
    job: JobRecord,
    base_path: str = "/v1/tts/jobs",
    *,
    now: float | None = None,
    stall_after_s: float = STALL_AFTER_S,
    eta_rtf: float = ETA_RTF,
) -> dict[str, Any]:
    """The job object of the API: status, chapters with their download urls, progress (within the running chapter:
    its audio seconds so far) and an estimate of the time left (`_eta`; `eta_rtf`: the render seconds per audio
    second to assume before the job has measured its own)."""
    now = time.time() if now is None else now
    status = shown_status(job, now, stall_after_s)
    done = [c for c in job.chapters if c.status == "done"]
    running = next((c for c in job.chapters if c.status == "running"), None)
    chars_total = sum(c.characters for c in job.chapters)
    chars_done = sum(c.characters for c in done)
    rendered_s = sum(c.render_seconds or 0.0 for c in done)
    within = _within(job, chars_done, done, running)
    eta: float | None = None
    if job.status in ("queued", "running"):
        eta = _eta(job, chars_total, chars_done, rendered_s, within, eta_rtf)
    elif job.status == "done":
        eta = 0.0
    percent = 100.0 if job.status == "done" else _percent(chars_done, within, chars_total)
    url = f"{base_path}/{job.id}"
    return {
        "id": job.id,
        "status": status,
        "title": job.title,
        "author": job.options.author,
        "created_at": iso(job.created_at),
        "chapters": [
            {
                "index": c.index,
                "title": c.title,
                "characters": c.characters,
                "status": c.status,
                "audio_seconds": None if c.audio_seconds is None else round(c.audio_seconds, 3),
                "url": f"{url}/chapters/{c.index}" if c.status == "done" else None,
            }
            for c in job.chapters
        ],
        "progress": {
            "chapters_done": len(done),
            "chapters_total": len(job.chapters),
            "characters_done": chars_done,
            "characters_total": chars_total,
            "audio_seconds": round(
                sum(c.audio_seconds or 0.0 for c in [*done, *([running] if running else [])]), 3
            ),
            "percent": percent,
            "eta_seconds": eta,
            "chapter": None
            if running is None
            else {"index": running.index, "audio_seconds": round(running.audio_seconds or 0.0, 3)},
        },
        "stalled": None
        if status != "stalled"
        else {
            "since": iso(job.heartbeat_at if job.heartbeat_at is not None else job.lease_expires),
            # A lease that has already ended (the process restarted, or none is free): taken as soon as a worker is.
            "retry_at": iso(max(job.lease_expires, now)),
        },
        "book_url": f"{url}/book" if job.book_done else None,
        "error": None
        if job.error_code is None
        else {"code": job.error_code, "message": job.error_message or ""},
    }


def _within(
    job: JobRecord, chars_done: int, done: list[ChapterRecord], running: ChapterRecord | None
) -> float:
    """How many of the running chapter's characters are spoken, by its audio so far (at the characters per audio
    second the chapters done measured, else `SPOKEN_CHARS_PER_S` at the job's speed), short of its end."""
    if running is None or not running.audio_seconds:
        return 0.0
    audio_done = sum(c.audio_seconds or 0.0 for c in done)
    rate = chars_done / audio_done if audio_done > 0 else SPOKEN_CHARS_PER_S * (job.options.speed or 1.0)
    return min(running.audio_seconds * rate, 0.99 * running.characters)


def _percent(chars_done: int, within: float, chars_total: int) -> float:
    """How much of the job's text is spoken, in percent: the chapters done and the running chapter's part, below
    100 until the job is done."""
    if not chars_total:
        return 0.0
    return round(min(100.0 * (chars_done + within) / chars_total, 99.9), 1)


def _eta(
    job: JobRecord, chars_total: int, chars_done: int, rendered_s: float, within: float, eta_rtf: float
) -> float:
    """Seconds left for a queued or running job. Once a chapter is done: the characters left at the rendering rate
    the job's chapters measured (its own device and load). Before: never unknown, so that a client can show a time
    from the submission on: the audio the text left will make (`SPOKEN_CHARS_PER_S` at the job's speed, less what
    the running chapter has spoken) times `eta_rtf`, so it counts down as the first chapter renders."""
    if chars_done and rendered_s > 0:
        return round((chars_total - chars_done) / (chars_done / rendered_s), 1)
    audio_left = max(chars_total - chars_done - within, 0.0) / (
        SPOKEN_CHARS_PER_S * (job.options.speed or 1.0)
    )
    return round(audio_left * eta_rtf, 1)
