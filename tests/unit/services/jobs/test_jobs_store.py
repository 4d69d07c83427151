"""The SQLite job store: jobs per key, chapters, and the lease that keeps one job on one process at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.jobs.records import ChapterRecord, JobOptions, JobRecord, job_view
from services.jobs.store import SqliteJobStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(job_id: str, key_id: str = "k1", created_at: float = 1.0, chapters: int = 3) -> JobRecord:
    return JobRecord(
        id=job_id,
        key_id=key_id,
        key_hash="h" * 64,
        title="Book",
        options=JobOptions(voice="Asha", format="wav", book_format="m4b"),
        created_at=created_at,
        chapters=tuple(
            ChapterRecord(index=i, title=f"C{i}", text="x" * (10 * i)) for i in range(1, chapters + 1)
        ),
    )


def run(coro):
    return asyncio.run(coro)


def test_jobs_belong_to_their_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job("a", created_at=1.0))
        await store.create(job("b", created_at=2.0))
        await store.create(job("c", key_id="k2"))
        got = await store.get("a", "k1")
        assert got is not None and got.options.voice == "Asha"
        assert [c.characters for c in got.chapters] == [10, 20, 30]
        assert await store.get("a", "k2") is None  # another key's job is not found
        assert [j.id for j in await store.list("k1")] == ["b", "a"]  # newest first
        assert await store.cancel("a", "k2") is None
        assert (await store.get("a", "k1")).status == "queued"
        await store.close()

    run(scenario())


def test_one_process_holds_a_job_until_its_lease_expires(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = Clock()
        store = SqliteJobStore(tmp_path / "jobs.sqlite3", clock=clock)
        await store.create(job("a"))
        first = await store.claim("p1", lease_s=30)
        assert first is not None and first.status == "running"
        assert await store.claim("p2", lease_s=30) is None  # held
        clock.now += 20
        assert await store.renew("a", "p1", 30)
        clock.now += 29
        assert await store.claim("p2", lease_s=30) is None  # renewed: still held
        clock.now += 2  # p1 died: its lease ran out
        taken = await store.claim("p2", lease_s=30)
        assert taken is not None and taken.id == "a"
        assert not await store.renew("a", "p1", 30)  # p1 lost it
        await store.finish("a", "p1", "done")  # not p1's any more: nothing changes
        assert (await store.get("a", None)).status == "running"
        await store.close()

    run(scenario())


def test_chapters_progress_and_a_cancel_stays(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job("a"))
        await store.claim("p1", lease_s=30)
        await store.set_chapter("a", 1, "done", audio_seconds=2.0, render_seconds=1.0, request_id="r1")
        view = job_view(await store.get("a", "k1"))
        assert view["progress"]["chapters_done"] == 1
        assert view["progress"]["characters_done"] == 10
        assert view["progress"]["eta_seconds"] == 5.0  # 50 characters left at 10 a second
        assert view["chapters"][0]["url"] == "/v1/tts/jobs/a/chapters/1"
        assert view["chapters"][1]["url"] is None
        cancelled = await store.cancel("a", "k1")
        assert cancelled is not None and cancelled.status == "cancelled"
        assert not await store.renew("a", "p1", 30)  # the runner learns of the cancel
        await store.finish("a", "p1", "done")
        final = await store.get("a", "k1")
        assert final.status == "cancelled" and final.chapters[0].status == "done"
        assert await store.claim("p2", lease_s=30) is None  # a cancelled job is never taken again
        await store.close()

    run(scenario())


def test_the_store_survives_a_reopen(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job("a"))
        await store.claim("p1", lease_s=30)
        await store.release("a", "p1")
        await store.close()
        again = SqliteJobStore(tmp_path / "jobs.sqlite3")
        taken = await again.claim("p2", lease_s=30)  # released: taken at once
        assert taken is not None and taken.id == "a"
        await again.close()

    run(scenario())


def test_options_keep_a_lexicon_and_dictionaries_and_read_older_rows() -> None:
    from services.jobs.render import lexicon_of, locators_of

    options = JobOptions(lexicon=(("HMS", "His Majesty's Ship", True, True),), dictionaries=(("d1", None),))
    again = JobOptions.from_json(options.to_json())
    assert again == options
    assert lexicon_of(again).apply("The HMS Victory") == "The His Majesty's Ship Victory"
    assert [(loc.dictionary_id, loc.version_id) for loc in locators_of(again)] == [("d1", None)]
    older = JobOptions.from_json(
        '{"voice": null, "format": "mp3", "book_format": "m4b", "sample_rate": 24000, "speed": null}'
    )
    assert older.lexicon == () and older.dictionaries == () and lexicon_of(older) is None


def test_a_store_file_of_the_first_release_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    from services.jobs.store import SCHEMA

    path = tmp_path / "jobs.sqlite3"
    db = sqlite3.connect(path)
    first = SCHEMA.replace(
        "    lease_expires REAL NOT NULL DEFAULT 0,\n    finished_at REAL,\n"
        "    claimed_at REAL NOT NULL DEFAULT 0,\n    heartbeat_at REAL\n",
        "    lease_expires REAL NOT NULL DEFAULT 0\n",
    )
    for index in ("tts_jobs_finished ", "tts_jobs_turns "):  # indexes on the columns added since
        first = "\n".join(line for line in first.split("\n") if f"INDEX IF NOT EXISTS {index}" not in line)
    db.executescript(first)
    assert "finished_at" not in {row[1] for row in db.execute("PRAGMA table_info(tts_jobs)")}
    db.close()

    async def scenario() -> None:
        store = SqliteJobStore(path)
        await store.create(job("j1"))
        assert (await store.get("j1", "k1")).finished_at is None
        assert (await store.claim("p1", 30)).heartbeat_at is not None
        await store.close()

    asyncio.run(scenario())


def test_keys_take_turns_one_chapter_each(tmp_path: Path) -> None:
    """Key A queues a long book first; key B's one-chapter job is claimed as soon as A's chapter gives its lease
    back, not after A's whole queue."""

    async def scenario() -> None:
        clock = Clock()
        store = SqliteJobStore(tmp_path / "jobs.sqlite3", clock=clock)
        await store.create(job("a1", key_id="A", created_at=1.0, chapters=5))
        await store.create(job("a2", key_id="A", created_at=2.0, chapters=5))
        first = await store.claim("p1", lease_s=30)
        assert first is not None and first.id == "a1"
        clock.now += 1
        await store.create(job("b1", key_id="B", created_at=clock.now, chapters=1))
        await store.set_chapter("a1", 1, "done", audio_seconds=1.0, render_seconds=1.0)
        await store.release("a1", "p1")  # A's chapter ended: the next claim is B's turn
        clock.now += 1
        order = []
        for _ in range(4):
            taken = await store.claim("p1", lease_s=30)
            assert taken is not None
            order.append(taken.key_id)
            if taken.id == "b1":
                await store.finish("b1", "p1", "done")
            else:
                await store.release(taken.id, "p1")
            clock.now += 1
        assert order[0] == "B" and order[1:] == ["A", "A", "A"]
        await store.close()

    run(scenario())


def test_reads_carry_no_text_and_a_claim_the_next_chapter_s_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(job("a"))
        await store.set_chapter("a", 1, "done", audio_seconds=1.0, render_seconds=1.0)
        got = await store.get("a", "k1")
        assert [c.text for c in got.chapters] == ["", "", ""]
        assert [c.characters for c in got.chapters] == [10, 20, 30]
        assert [c.text for c in (await store.list("k1"))[0].chapters] == ["", "", ""]
        taken = await store.claim("p1", 30)
        assert [c.text for c in taken.chapters] == ["", "x" * 20, ""]
        assert [c.characters for c in taken.chapters] == [10, 20, 30]
        await store.close()

    run(scenario())


def test_progress_within_a_chapter_and_a_dead_worker_shows_stalled(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = Clock()
        store = SqliteJobStore(tmp_path / "jobs.sqlite3", clock=clock)
        await store.create(job("a"))
        await store.claim("p1", lease_s=30)
        await store.set_chapter("a", 1, "running")
        clock.now += 2
        assert await store.renew("a", "p1", 30, progress=(1, 3.25))
        view = job_view(await store.get("a", "k1"), now=clock.now)
        assert view["status"] == "running" and view["stalled"] is None
        assert view["progress"]["chapter"] == {"index": 1, "audio_seconds": 3.25}
        assert view["progress"]["audio_seconds"] == 3.25
        assert view["progress"]["percent"] > 0
        assert (
            view["progress"]["eta_seconds"] == 3.6
        )  # in the first chapter: (60 - 9.9) characters at 14 a second
        clock.now += 11  # the worker was killed: no word for longer than the stall limit
        view = job_view(await store.get("a", "k1"), now=clock.now)
        assert view["status"] == "stalled"
        assert view["stalled"]["retry_at"] == "1970-01-01T00:17:12Z"  # its lease's end: 1002 + 30
        clock.now += (
            60  # the lease has ended and no worker has taken it yet (a restart): "now", never the past
        )
        view = job_view(await store.get("a", "k1"), now=clock.now)
        assert view["stalled"]["retry_at"] == "1970-01-01T00:17:53Z"  # 1002 + 11 + 60
        await store.release("a", "p1")  # between chapters nobody holds it: it waits for its turn
        assert job_view(await store.get("a", "k1"), now=clock.now)["status"] == "queued"
        await store.close()

    run(scenario())
