"""Job holders on the real PostgreSQL job store, two held runners as two containers: only the one a holder drains
claims; a job whose holder's container died (its lease left held) is claimed by another holder once the lease runs
out, inside that holder's drain, which returns once the queue is empty."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from services.database import PostgresPool
from services.jobs import runner as runner_module
from services.jobs.store_postgres import PostgresJobStore
from tests.integration.test_jobs_store_pg import drop, job
from tests.unit.services.jobs.test_job_holds import LEASE_S, GatedRendering, held_runner

pytestmark = pytest.mark.integration


async def test_a_holder_drains_its_container_and_takes_a_dead_holders_job(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendering = GatedRendering()
    rendering.gate.set()
    monkeypatch.setattr(runner_module, "render_chapter", rendering)
    pools = PostgresPool(pg_dsn), PostgresPool(pg_dsn)
    one, two = (held_runner(PostgresJobStore(pool), tmp_path / f"c{i}") for i, pool in enumerate(pools))  # type: ignore[arg-type]
    records = [job(f"key-{uuid.uuid4().hex[:8]}", chapters=2) for _ in range(2)]
    try:
        for runner in (one, two):
            runner.hold_with(lambda: None)
            runner.start()
        await one.store.create(records[0])
        await asyncio.sleep(0.2)  # no holder anywhere: nobody claims
        assert rendering.rendered == []
        assert await asyncio.wait_for(one.drain(), 10) is False
        assert [r for r in rendering.rendered if r[0] == records[0].id] == [
            (records[0].id, 1),
            (records[0].id, 2),
        ]

        await two.store.create(records[1])
        dead = await two.store.claim("a-container-that-died", LEASE_S)  # leased, never renewed nor released
        assert dead is not None and dead.id == records[1].id
        assert await asyncio.wait_for(two.drain(), 10) is False
        done = await two.store.get(records[1].id, None)
        assert done is not None and done.status == "done"
        assert {r for r in rendering.rendered if r[0] == records[1].id} == {
            (records[1].id, 1),
            (records[1].id, 2),
        }
    finally:
        for runner in (one, two):
            await runner.stop()
        for record in records:
            await drop(pg_dsn, record.id)
        for pool in pools:
            await pool.close()
