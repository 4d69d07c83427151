"""What a job submission checks before anything is stored: credits, the key's queued characters and stored bytes,
free disk space, the title, and that a nearly full disk starts no chapter."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.errors import ServiceError
from services.jobs.render import JobFiles
from services.jobs.runner import JobRunner
from services.jobs.service import ChapterText, JobService
from services.jobs.store import SqliteJobStore
from services.keys.records import anonymous_record
from shared.settings import Settings


class Speech:
    models = SimpleNamespace(ready=False)
    settings = None

    async def lexicon(self, probe, key_id) -> None:
        return None


def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> JobService:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    files = JobFiles(tmp_path)
    runner = JobRunner(
        store,
        Speech(),  # type: ignore[arg-type]
        SimpleNamespace(authenticator=None),  # type: ignore[arg-type]
        files,
        write_book=lambda job, files: None,
    )
    return JobService(settings, store, runner, files)


def submit(jobs: JobService, key, text: str, title: str | None = None):
    options = jobs.options(voice=None, fmt="wav", book_format=None, sample_rate=24000, speed=None)
    return jobs.queue(key, Speech(), [ChapterText("One", text)], options, title)  # type: ignore[arg-type]


def test_a_key_with_no_credits_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        jobs = service(tmp_path, monkeypatch, TTS_CREDITS_ENABLED="true")
        broke = replace(anonymous_record(), credit_balance=0)
        with pytest.raises(ServiceError) as refused:
            await submit(jobs, broke, "Hello there.")
        assert refused.value.code == "INSUFFICIENT_CREDITS" and refused.value.status == 403
        assert await jobs.jobs(broke.key_id) == []
        await jobs.store.close()

    asyncio.run(scenario())


def test_a_job_the_balance_cannot_pay_for_is_refused_at_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        jobs = service(tmp_path, monkeypatch, TTS_CREDITS_ENABLED="true")
        poor = replace(anonymous_record(), credit_balance=10)
        with pytest.raises(ServiceError) as refused:
            await submit(jobs, poor, "x" * 11)  # 11 credits at 1 a character: over 10
        assert refused.value.code == "INSUFFICIENT_CREDITS" and refused.value.status == 403
        assert "11 credits" in refused.value.message
        assert await jobs.jobs(poor.key_id) == []
        assert (await submit(jobs, poor, "x" * 10)).chapters[0].characters == 10
        await jobs.store.close()

    asyncio.run(scenario())


def test_a_failed_jobs_text_counts_until_it_is_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        jobs = service(tmp_path, monkeypatch, TTS_JOBS_STORED_MB_PER_KEY="1")
        key = anonymous_record()
        first = await submit(jobs, key, "é" * 300_000)  # 600 KB of UTF-8
        assert await jobs.store.claim("p1", 30) is not None
        await jobs.store.finish(first.id, "p1", "failed", error_code="X", error_message="failed")
        second = await submit(jobs, key, "é" * 300_000)  # 1.2 MB now kept: the next is refused
        with pytest.raises(ServiceError) as stored:
            await submit(jobs, key, "z")
        assert stored.value.code == "PAYLOAD_TOO_LARGE" and "audio and text" in stored.value.message
        assert await jobs.cancel_or_remove(first.id, key.key_id) is None  # deleted: its text is gone
        assert (await submit(jobs, key, "z")).id not in (first.id, second.id)
        await jobs.store.close()

    asyncio.run(scenario())


def test_quotas_title_and_disk_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        jobs = service(
            tmp_path, monkeypatch, TTS_JOBS_QUEUED_CHARS_PER_KEY="30", TTS_JOBS_STORED_MB_PER_KEY="1"
        )
        key = anonymous_record()
        first = await submit(jobs, key, "x" * 20)
        with pytest.raises(ServiceError) as queued:
            await submit(jobs, key, "y" * 20)  # 40 characters would wait: over 30
        assert (
            queued.value.code == "TEXT_TOO_LONG" and "20 characters not yet rendered" in queued.value.message
        )
        with pytest.raises(ServiceError) as title:
            await submit(jobs, key, "z", title="T" * 501)
        assert title.value.param == "title"
        folder = jobs.files.folder(first.id)
        folder.mkdir(parents=True)
        (folder / "chapter-001.wav").write_bytes(b"\0" * 1_100_000)
        with pytest.raises(ServiceError) as stored:
            await submit(jobs, key, "z")
        assert stored.value.code == "PAYLOAD_TOO_LARGE"
        (folder / "chapter-001.wav").unlink()
        jobs.settings.jobs.jobs_min_free_mb = 10**12  # more than any disk has
        with pytest.raises(ServiceError) as full:
            await submit(jobs, key, "z")
        assert full.value.code == "SERVICE_UNAVAILABLE" and full.value.retry_after
        assert [j.id for j in await jobs.jobs(key.key_id)] == [first.id]
        await jobs.store.close()

    asyncio.run(scenario())


def test_a_nearly_full_disk_starts_no_chapter(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        runner = JobRunner(
            store,
            SimpleNamespace(models=SimpleNamespace(ready=True)),  # type: ignore[arg-type]
            SimpleNamespace(authenticator=None),  # type: ignore[arg-type]
            JobFiles(tmp_path),
            write_book=lambda job, files: None,
            min_free_mb=10**12,
        )
        assert not await runner._room()
        runner.min_free_mb = 0
        assert await runner._room()
        await store.close()

    asyncio.run(scenario())
