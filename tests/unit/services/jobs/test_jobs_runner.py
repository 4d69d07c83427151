"""The job runner: resume from the first chapter not done, a cut chapter rendered again, credits out and resumed,
cancel, and ended jobs deleted after their retention (a simulated clock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.errors import ServiceError
from services.jobs import runner as runner_module
from services.jobs.records import ChapterRecord, JobOptions, JobRecord
from services.jobs.render import JobFiles, RenderedChapter
from services.jobs.runner import JobRunner
from services.jobs.store import SqliteJobStore


def job(chapters: int = 3) -> JobRecord:
    return JobRecord(
        id="j1",
        key_id="anonymous",
        key_hash="0" * 64,
        title="Book",
        options=JobOptions(format="wav"),
        created_at=1.0,
        chapters=tuple(
            ChapterRecord(index=i, title=f"C{i}", text=f"chapter {i}") for i in range(1, chapters + 1)
        ),
    )


class Rendering:
    """A stand-in for render_chapter: records which chapters ran; `block` holds one until released."""

    def __init__(self, *, block: int | None = None, fail: dict[int, str] | None = None) -> None:
        self.rendered: list[int] = []
        self.block = block
        self.fail = fail or {}
        self.blocked = asyncio.Event()

    async def __call__(self, job, chapter, **_) -> RenderedChapter:
        if chapter.index == self.block:
            self.blocked.set()
            await asyncio.Event().wait()  # until cancelled
        if chapter.index in self.fail:
            raise ServiceError(self.fail[chapter.index], "refused")
        self.rendered.append(chapter.index)
        return RenderedChapter(audio_seconds=1.5, render_seconds=0.5, request_id=f"r{chapter.index}")


def make_runner(store, tmp_path: Path, books: list, retention_s: float = 0.0) -> JobRunner:
    speech = SimpleNamespace(models=SimpleNamespace(ready=True))
    access = SimpleNamespace(authenticator=None)
    return JobRunner(
        store,
        speech,  # type: ignore[arg-type]
        access,  # type: ignore[arg-type]
        JobFiles(tmp_path),
        write_book=lambda job, files: books.append(job.id),
        lease_s=30,
        poll_s=0.05,
        retention_s=retention_s,
    )


async def until(predicate, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_job_resumes_from_its_first_chapter_not_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job())
        await store.set_chapter("j1", 1, "done", audio_seconds=1.0, render_seconds=1.0)
        rendering = Rendering()
        monkeypatch.setattr(runner_module, "render_chapter", rendering)
        books: list = []
        runner = make_runner(store, tmp_path, books)
        runner.start()
        await until(lambda: _status(store, "done"))
        await runner.stop()
        assert rendering.rendered == [2, 3]  # chapter 1 was done: never rendered again
        assert books == ["j1"]
        assert runner.measured_rtf == pytest.approx(0.5 / 1.5)  # the next new job's first ETA
        final = await store.get("j1", None)
        assert final.book_done and [c.request_id for c in final.chapters] == [None, "r2", "r3"]
        await store.close()

    asyncio.run(scenario())


def test_a_chapter_cut_by_a_stop_is_rendered_again_by_the_next_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job())
        first = Rendering(block=2)
        monkeypatch.setattr(runner_module, "render_chapter", first)
        books: list = []
        runner = make_runner(store, tmp_path, books)
        runner.start()
        await asyncio.wait_for(first.blocked.wait(), 5)
        await runner.stop()  # the process stops mid-chapter 2
        cut = await store.get("j1", None)
        assert [c.status for c in cut.chapters] == ["done", "pending", "pending"]
        second = Rendering()
        monkeypatch.setattr(runner_module, "render_chapter", second)
        again = make_runner(store, tmp_path, books)
        again.start()  # the lease was given up: taken at once
        await until(lambda: _status(store, "done"))
        await again.stop()
        assert first.rendered == [1] and second.rendered == [2, 3]
        await store.close()

    asyncio.run(scenario())


def test_out_of_credits_fails_the_job_and_keeps_finished_chapters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job())
        monkeypatch.setattr(runner_module, "render_chapter", Rendering(fail={2: "INSUFFICIENT_CREDITS"}))
        runner = make_runner(store, tmp_path, [])
        runner.start()
        await until(lambda: _status(store, "failed"))
        await runner.stop()
        final = await store.get("j1", None)
        assert final.error_code == "INSUFFICIENT_CREDITS" and "chapter 2" in (final.error_message or "")
        assert [c.status for c in final.chapters] == ["done", "failed", "pending"]
        await store.close()

    asyncio.run(scenario())


def test_a_job_out_of_credits_resumes_from_its_first_chapter_not_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job())
        short = Rendering(fail={2: "INSUFFICIENT_CREDITS"})
        monkeypatch.setattr(runner_module, "render_chapter", short)
        runner = make_runner(store, tmp_path, [])
        runner.start()
        await until(lambda: _status(store, "failed"))
        topped_up = Rendering()
        monkeypatch.setattr(runner_module, "render_chapter", topped_up)
        resumed = await store.resume("j1", "anonymous")
        assert resumed is not None and resumed.status == "queued" and resumed.error_code is None
        assert [c.status for c in resumed.chapters] == ["done", "pending", "pending"]
        runner.wake()
        await until(lambda: _status(store, "done"))
        await runner.stop()
        assert short.rendered == [1] and topped_up.rendered == [2, 3]  # chapter 1 never again
        assert await store.resume("j1", "anonymous") is not None  # a done job stays done
        assert (await store.get("j1", None)).status == "done"
        assert await store.resume("j1", "another key") is None
        await store.close()

    asyncio.run(scenario())


def test_cancel_stops_the_running_chapter_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job())
        rendering = Rendering(block=2)
        monkeypatch.setattr(runner_module, "render_chapter", rendering)
        runner = make_runner(store, tmp_path, [])
        runner.start()
        await asyncio.wait_for(rendering.blocked.wait(), 5)
        part = tmp_path / "j1" / "chapter-002.wav.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"RIFF")  # what a cut chapter leaves
        await store.cancel("j1", "anonymous")
        runner.cancel("j1")
        await until(lambda: _idle(runner))
        final = await store.get("j1", None)
        assert final.status == "cancelled"
        assert [c.status for c in final.chapters] == ["done", "pending", "pending"]
        assert not part.exists()
        await runner.stop()
        await store.close()

    asyncio.run(scenario())


async def _status(store: SqliteJobStore, status: str) -> bool:
    current = await store.get("j1", None)
    return current is not None and current.status == status


async def _idle(runner: JobRunner) -> bool:
    return not runner.running


def test_a_chapter_longer_than_one_request_becomes_parts_cut_at_sentence_ends() -> None:
    from services.jobs.service import ChapterText, split_long

    sentence = "This sentence is forty characters long. "
    parts = split_long([ChapterText("Long", sentence * 10), ChapterText("Short", "Hi.")], limit=130)
    assert [p.title for p in parts] == ["Long (1)", "Long (2)", "Long (3)", "Long (4)", "Short"]
    assert all(len(p.text) <= 130 and p.text.endswith(".") for p in parts)
    assert " ".join(p.text for p in parts[:4]) == (sentence * 10).strip()


def test_ended_jobs_are_deleted_after_their_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        now = [1000.0]
        store = SqliteJobStore(tmp_path / "jobs.sqlite3", clock=lambda: now[0])
        await store.create(job())
        monkeypatch.setattr(runner_module, "render_chapter", Rendering())
        runner = make_runner(store, tmp_path, [], retention_s=3600)
        folder = tmp_path / "j1"
        folder.mkdir()
        (folder / "chapter-001.wav").write_bytes(b"RIFF")
        runner.start()
        await until(lambda: _status(store, "done"))
        await runner.stop()
        assert (await store.get("j1", None)).finished_at == 1000.0
        now[0] += 3599
        assert await runner.sweep() == 0 and folder.exists()  # within its retention: kept
        now[0] += 2
        assert await runner.sweep() == 1
        assert await store.get("j1", None) is None and not folder.exists()
        await store.close()

    asyncio.run(scenario())


def test_an_ended_job_is_deleted_only_once_no_process_holds_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        now = [1000.0]
        store = SqliteJobStore(tmp_path / "jobs.sqlite3", clock=lambda: now[0])
        await store.create(job())
        assert await store.delete("j1", "anonymous") is False  # queued: not ended
        assert await store.claim("p1", 30) is not None
        await store.cancel("j1", "anonymous")
        assert await store.delete("j1", "anonymous") is False  # its chapter is still stopping
        assert (await store.resume("j1", "anonymous")).status == "cancelled"  # nor resumed yet
        now[0] += 31  # the lease ran out
        assert await store.delete("j1", "another key") is False
        assert await store.delete("j1", "anonymous") is True
        assert await store.get("j1", None) is None
        await store.close()

    asyncio.run(scenario())


def test_another_key_s_first_chapter_starts_within_one_chapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        long = job(chapters=6)
        await store.create(long)
        order: list[tuple[str, int]] = []
        started = asyncio.Event()

        async def rendering(job_record, chapter, **_) -> RenderedChapter:
            order.append((job_record.key_id, chapter.index))
            started.set()
            await asyncio.sleep(0.05)
            return RenderedChapter(audio_seconds=1.0, render_seconds=0.05, request_id="r")

        monkeypatch.setattr(runner_module, "render_chapter", rendering)
        runner = make_runner(store, tmp_path, [])
        runner.start()
        await asyncio.wait_for(started.wait(), 5)  # key A's first chapter renders
        other = JobRecord(
            id="j2",
            key_id="B",
            key_hash="1" * 64,
            title=None,
            options=JobOptions(format="wav", book_format=None),
            created_at=2.0,
            chapters=(ChapterRecord(index=1, title="Only", text="short"),),
        )
        await store.create(other)
        runner.wake()
        await until(lambda: _status(store, "done"))
        await runner.stop()
        assert order[:2] == [("anonymous", 1), ("B", 1)]  # B waited for one chapter, not six
        assert [i for k, i in order if k == "anonymous"] == [1, 2, 3, 4, 5, 6]
        await store.close()

    asyncio.run(scenario())


def test_the_heartbeat_stores_progress_within_a_chapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job(chapters=1))
        seen: list[float] = []

        async def rendering(job_record, chapter, *, progress, **_) -> RenderedChapter:
            for second in range(1, 40):
                progress(float(second))
                await asyncio.sleep(0.01)
                current = await store.get("j1", None)
                seen.append(current.chapters[0].audio_seconds or 0.0)
            return RenderedChapter(audio_seconds=40.0, render_seconds=0.4, request_id="r")

        monkeypatch.setattr(runner_module, "render_chapter", rendering)
        runner = make_runner(store, tmp_path, [])
        runner.heartbeat_s = 0.05
        runner.start()
        await until(lambda: _status(store, "done"))
        await runner.stop()
        assert max(seen) > 5.0  # the stored progress moved while the chapter rendered
        await store.close()

    asyncio.run(scenario())
