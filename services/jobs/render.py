"""One chapter rendered, written and charged: the job runner's unit of work.

A chapter is one request as the service knows requests: opened through HTTP's entrance (services/access/entrance.py:
voice, text plan, credits reserved for the normalised text, one `RequestAccounting` for metrics and the request log's
intent and final records) with `work_class="background"`, and settled as an HTTP request is (`AccessGrant.settle`,
services/access/grant.py): a chapter that completes is charged at the live price, one that fails or is cut (a cancel, a shutdown, a dead
process) is refunded. Its audio is written as PCM into a WAV file (kept for the book), then encoded to the job's
chapter format with the project's encoders (audio/encoders.py). Files are written under a `.part` name and renamed
when whole, so a chapter cut mid-way never leaves a file that looks finished.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio.encoders import create_encoder
from audio.pcm import s16le_to_float
from audio.wav import WAV_HEADER_BYTES, wav_header
from processing.lexicon import AliasRule, DictionaryLocator, Lexicon
from services.access import AccessGrant, AccessServices
from services.access.entrance import Arrival, open_accounted
from services.jobs.records import ChapterRecord, JobOptions, JobRecord
from services.jobs.tags import BookTags, find_cover, tag_chapter
from services.keys.records import ApiKeyRecord
from services.pipeline.speech import SpeechRequest, SpeechService
from services.pipeline.synthesis import SamplingOptions
from shared.logging import request_id_var

# PCM is encoded to the chapter's format in blocks of this many samples (bounded memory for long chapters).
ENCODE_BLOCK = 1 << 18
FILE_EXTENSIONS = {"mp3": "mp3", "wav": "wav", "flac": "flac", "opus": "ogg", "aac": "aac", "m4b": "m4b"}


@dataclass(frozen=True)
class JobFiles:
    """A job's folder in the jobs directory: each chapter's WAV and file, and the book."""

    root: Path

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def chapter_wav(self, job_id: str, index: int) -> Path:
        return self.folder(job_id) / f"chapter-{index:03d}.wav"

    def chapter_file(self, job_id: str, index: int, fmt: str) -> Path:
        return self.folder(job_id) / f"chapter-{index:03d}.{FILE_EXTENSIONS.get(fmt, fmt)}"

    def book(self, job_id: str, fmt: str) -> Path:
        return self.folder(job_id) / f"book.{FILE_EXTENSIONS.get(fmt, fmt)}"

    def size(self, job_ids: Sequence[str]) -> int:
        """Bytes the jobs' folders hold (blocking)."""
        return sum(
            path.stat().st_size
            for job_id in job_ids
            if self.folder(job_id).is_dir()
            for path in self.folder(job_id).iterdir()
            if path.is_file()
        )

    def has_room(self, min_free_mb: int) -> bool:
        """Whether the jobs directory's disk has at least `min_free_mb` free (blocking)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.root).free >= min_free_mb * 1_000_000


@dataclass(frozen=True)
class RenderedChapter:
    audio_seconds: float
    render_seconds: float
    request_id: str


def lexicon_of(options: JobOptions) -> Lexicon | None:
    return Lexicon(tuple(AliasRule(*rule) for rule in options.lexicon)) if options.lexicon else None


def locators_of(options: JobOptions) -> tuple[DictionaryLocator, ...]:
    return tuple(DictionaryLocator(*locator) for locator in options.dictionaries)


def speech_request(job: JobRecord, chapter: ChapterRecord, speech: SpeechService) -> SpeechRequest:
    options = job.options
    return SpeechRequest(
        text=chapter.text,
        voice=options.voice,
        audio_format="pcm",  # written to the chapter's WAV as it comes; encoded once whole
        sample_rate=options.sample_rate,
        sampling=SamplingOptions.with_defaults(speech.settings),
        stream=False,
        speed=options.speed,
        voice_field="voice",
        work_class="background",
        dictionaries=locators_of(options),
        lexicon=lexicon_of(options),
    )


async def render_chapter(
    job: JobRecord,
    chapter: ChapterRecord,
    *,
    speech: SpeechService,
    access: AccessServices,
    key: ApiKeyRecord,
    files: JobFiles,
    progress: Callable[[float], None] | None = None,
) -> RenderedChapter:
    """Render `chapter` into its WAV and its file; raises the service's error (nothing charged) when it fails, and
    CancelledError (refunded: the partial audio reaches nobody) when the job is cancelled or the server stops.
    `progress` is told the audio seconds written so far, at each block (the runner's heartbeat stores it)."""
    started = time.perf_counter()
    request_id = f"job-{job.id}-{chapter.index}-{uuid.uuid4().hex[:8]}"
    request_id_var.set(
        request_id
    )  # the attempt's own task (jobs/runner.py): every log line of it carries the id
    accounted = await open_accounted(
        speech,
        speech_request(job, chapter, speech),
        AccessGrant(key=key, services=access, request_id=request_id),
        Arrival(request_id, "job", started),
        job_id=job.id,
        chapter=chapter.index,
    )
    synthesis, accounting = accounted.job, accounted.accounting
    wav = files.chapter_wav(job.id, chapter.index)
    wav.parent.mkdir(parents=True, exist_ok=True)
    part = wav.with_name(wav.name + ".part")
    rate = job.options.sample_rate
    try:
        with part.open("wb") as out:
            out.write(wav_header(rate))  # sizes patched once the chapter is whole
            size = 0
            async for data in synthesis.stream_bytes():
                accounting.first_audio()
                out.write(data)
                size += len(data)
                accounting.audio_sent()
                if progress is not None:
                    progress(size / 2 / rate)
            if size & 1:
                out.write(b"\x00")
            out.seek(0)
            out.write(wav_header(rate, data_bytes=size))
    except asyncio.CancelledError:
        accounting.finish("interrupted")
        raise
    except Exception as exc:
        accounting.finish("failed", getattr(exc, "code", None) or "INTERNAL_ERROR")
        raise
    os.replace(part, wav)
    target = files.chapter_file(job.id, chapter.index, job.options.format)
    await asyncio.to_thread(encode_file, wav, target, job.options.format)
    tags = BookTags(job.title, job.options.author, find_cover(files.folder(job.id)))
    await asyncio.to_thread(
        tag_chapter, target, job.options.format, chapter.title, chapter.index, len(job.chapters), tags
    )
    accounting.finish("completed")
    if accounting.settling is not None:  # the record is spooled before the chapter counts as done
        await asyncio.wait({accounting.settling}, timeout=5)
    return RenderedChapter(
        audio_seconds=size / 2 / rate, render_seconds=time.perf_counter() - started, request_id=request_id
    )


def encode_file(wav: Path, target: Path, fmt: str) -> None:
    """The chapter's WAV in `fmt` (blocking: run it in a thread)."""
    if fmt == "wav":
        return  # the WAV is the chapter's file
    data = np.memmap(wav, dtype="<i2", mode="r", offset=WAV_HEADER_BYTES)
    with open(wav, "rb") as f:
        rate = int.from_bytes(f.read(28)[24:28], "little")
    encoder = create_encoder(fmt, rate, streaming=False)
    part = target.with_name(target.name + ".part")
    try:
        with part.open("wb") as out:
            for start in range(0, len(data), ENCODE_BLOCK):
                out.write(encoder.push(s16le_to_float(data[start : start + ENCODE_BLOCK].tobytes())))
            out.write(encoder.flush())
    finally:
        encoder.close()
    os.replace(part, target)
