"""Progress streams share one poll per job, are capped per key, and end with a `shutdown` event when the server
stops."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from services.errors import ServiceError
from services.jobs.records import ChapterRecord, JobOptions, JobRecord, job_view
from services.jobs.store import SqliteJobStore
from services.jobs.watch import JobWatch
from services.usage import shutdown


class CountingStore(SqliteJobStore):
    gets = 0

    async def get(self, job_id, key_id):
        self.gets += 1
        return await super().get(job_id, key_id)


def record() -> JobRecord:
    return JobRecord(
        id="j1",
        key_id="k1",
        key_hash="0" * 64,
        title=None,
        options=JobOptions(format="wav"),
        created_at=1.0,
        chapters=(ChapterRecord(index=1, title="C1", text="x" * 10),),
    )


async def follow(watch: JobWatch, out: list[str]) -> None:
    async for event, _ in watch.events("j1", "k1"):
        out.append(event)


def test_many_streams_share_one_poll_and_end_with_the_job(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = CountingStore(tmp_path / "jobs.sqlite3")
        await store.create(record())
        watch = JobWatch(store, poll_s=0.05, per_key=100, view=job_view)
        streams = [[] for _ in range(50)]
        tasks = [asyncio.create_task(follow(watch, out)) for out in streams]
        await asyncio.sleep(0.5)
        polls = store.gets
        assert polls <= 15  # one read per poll, not one per stream per poll (50 streams: ~500)
        await store.claim("p1", 30)
        await store.set_chapter("j1", 1, "done", audio_seconds=1.0, render_seconds=1.0)
        await store.finish("j1", "p1", "done")
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert all(out[-1] == "done" and out[0] == "progress" for out in streams)
        assert not watch.polls and not watch.open  # the poll stopped with its last stream
        await store.close()

    asyncio.run(scenario())


def test_a_key_s_streams_are_capped(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(record())
        watch = JobWatch(store, poll_s=0.05, per_key=2, view=job_view)
        streams = [[] for _ in range(2)]
        tasks = [asyncio.create_task(follow(watch, out)) for out in streams]
        await asyncio.sleep(0.2)
        with pytest.raises(ServiceError) as refused:
            watch.admit("k1")
        assert refused.value.code == "TOO_MANY_CONCURRENT_REQUESTS"
        watch.admit("k2")  # another key is not counted against k1
        watch.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert [out[-1] for out in streams] == ["shutdown", "shutdown"]
        await store.close()

    asyncio.run(scenario())


def test_sigterm_ends_every_stream_with_a_shutdown_event(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        await store.create(record())
        watch = JobWatch(store, poll_s=0.05, per_key=10, view=job_view)
        got: list[tuple[str, str]] = []

        async def read() -> None:
            async for item in watch.events("j1", "k1"):
                got.append(item)

        task = asyncio.create_task(read())
        await asyncio.sleep(0.2)
        shutdown.mark_shutting_down()  # what the SIGTERM handler does
        try:
            await asyncio.wait_for(task, 2)
        finally:
            shutdown.reset()
        assert got[-1][0] == "shutdown" and json.loads(got[-1][1])["id"] == "j1"
        await store.close()

    asyncio.run(scenario())
