"""Jobs render inside a holder input Modal counts: in held mode the runner claims only while `drain` runs; a
submitted job spawns one holder, which returns once the queue drained; a second submission while it runs spawns no
second one alongside it. Real runner and SQLite store; only Modal's spawn is a stand-in (it runs the holder here,
as Modal's queue would on a container with a free slot)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.deployment.job_holds import JobHolds
from services.deployment.modal_deployment import ContainerLifecycle, ModalConfig
from services.jobs import runner as runner_module
from services.jobs.render import JobFiles, RenderedChapter
from services.jobs.runner import JobRunner
from services.jobs.store import SqliteJobStore
from tests.unit.services.jobs.test_jobs_runner import job, until

LEASE_S = 0.3


class GatedRendering:
    """render_chapter's stand-in: each chapter waits for `gate` (set: chapters run straight through)."""

    def __init__(self) -> None:
        self.rendered: list[tuple[str, int]] = []
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def __call__(self, job, chapter, **_) -> RenderedChapter:
        self.waiting.set()
        await self.gate.wait()
        self.rendered.append((job.id, chapter.index))
        return RenderedChapter(audio_seconds=1.0, render_seconds=0.1, request_id=f"r{chapter.index}")


def held_runner(store: SqliteJobStore, tmp_path: Path) -> JobRunner:
    return JobRunner(
        store,
        SimpleNamespace(models=SimpleNamespace(ready=True)),  # type: ignore[arg-type]
        SimpleNamespace(authenticator=None),  # type: ignore[arg-type]
        JobFiles(tmp_path),
        write_book=lambda job, files: None,
        lease_s=LEASE_S,
        poll_s=0.02,
    )


async def _ended(store: SqliteJobStore, job_id: str) -> bool:
    current = await store.get(job_id, None)
    return current is not None and current.status == "done"


class FakeModal:
    """Stands in for Modal's spawn only: the holder input lands on this container and runs to its end."""

    def __init__(self, host: ContainerLifecycle) -> None:
        self.host = host
        self.in_flight = 0
        self.most_in_flight = 0
        self.returned: list[bool] = []

    async def spawn(self) -> bool:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            left = await self.host.render_jobs()
        finally:
            self.in_flight -= 1
        self.returned.append(left)
        return left


def container(tmp_path: Path, runner: JobRunner) -> tuple[ContainerLifecycle, FakeModal]:
    web_app = SimpleNamespace(
        state=SimpleNamespace(services=SimpleNamespace(jobs=SimpleNamespace(runner=runner)))
    )
    holder: list[FakeModal] = []
    host = ContainerLifecycle(
        ModalConfig(), app_factory=lambda *a, **k: web_app, spawn_holder=lambda: holder[0].spawn()
    )
    holder.append(FakeModal(host))
    host.web()
    return host, holder[0]


def test_a_held_runner_claims_nothing_until_a_holder_drains_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        rendering = GatedRendering()
        rendering.gate.set()
        monkeypatch.setattr(runner_module, "render_chapter", rendering)
        runner = held_runner(store, tmp_path)
        asked: list[str] = []
        runner.hold_with(lambda: asked.append("holder"))
        runner.start()
        assert asked == ["holder"]  # at start: jobs a gone container left find a holder
        await store.create(job())
        runner.queued()
        assert asked == ["holder", "holder"]
        await asyncio.sleep(0.2)  # several polls: no holder, no claim
        assert rendering.rendered == [] and not runner.running
        left = await asyncio.wait_for(runner.drain(), 5)
        assert left is False
        assert rendering.rendered == [("j1", 1), ("j1", 2), ("j1", 3)]
        assert await _ended(store, "j1")
        await runner.stop()
        await store.close()

    asyncio.run(scenario())


def test_a_holder_at_its_input_limit_says_work_was_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        rendering = GatedRendering()  # chapter 1 waits: the job is still running at max_s
        monkeypatch.setattr(runner_module, "render_chapter", rendering)
        runner = held_runner(store, tmp_path)
        runner.hold_with(lambda: None)
        runner.start()
        await store.create(job())
        assert await asyncio.wait_for(runner.drain(max_s=0.3), 5) is True
        rendering.gate.set()
        assert await asyncio.wait_for(runner.drain(), 5) is False  # the next holder finishes it
        assert await _ended(store, "j1")
        await runner.stop()
        await store.close()

    asyncio.run(scenario())


def test_submitting_spawns_one_holder_that_returns_when_the_queue_drains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        rendering = GatedRendering()
        monkeypatch.setattr(runner_module, "render_chapter", rendering)
        runner = held_runner(store, tmp_path)
        host, modal = container(tmp_path, runner)
        runner.start()  # the app's lifespan: one holder for what the store may hold
        holds = host.job_holds
        assert isinstance(holds, JobHolds)
        await until(lambda: _done(lambda: holds.in_flight is False))
        assert modal.returned == [False]  # an empty queue: the holder returned after a lease

        await store.create(job())
        runner.queued()  # POST /v1/tts/jobs
        await asyncio.wait_for(rendering.waiting.wait(), 5)
        assert holds.in_flight and modal.in_flight == 1
        await store.create(replace(job(), id="j2"))
        runner.queued()  # a second job while the holder runs: no second holder alongside it
        assert modal.in_flight == 1
        rendering.gate.set()
        await until(lambda: _ended(store, "j2"))
        await until(lambda: _done(lambda: holds.in_flight is False))
        assert modal.most_in_flight == 1
        assert {j for j, _ in rendering.rendered} == {"j1", "j2"} and len(rendering.rendered) == 6
        # The first holder rendered both; the one noted during it found nothing and returned too.
        assert modal.returned == [False, False, False] and holds.spawned == 3
        assert not runner.running
        await holds.stop()
        await runner.stop()
        await store.close()

    asyncio.run(scenario())


async def _done(check) -> bool:
    return bool(check())


def test_a_failed_spawn_is_tried_again_and_a_holder_that_left_work_is_followed() -> None:
    async def scenario() -> None:
        answers: list[object] = [RuntimeError("Modal unreachable"), True, False]

        async def spawn() -> bool:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return bool(answer)

        holds = JobHolds(spawn, retry_s=0.01)
        holds.request()
        await until(lambda: _done(lambda: holds.in_flight is False))
        assert answers == [] and holds.spawned == 3  # the failure, the holder that left work, its successor

    asyncio.run(scenario())
