"""Recent requests in PostgreSQL (deploy/sql/006_recent_requests.sql): shared by containers, expiring, bounded; and
stitching + keeping a voice across two app instances on one database, as two Modal containers would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.continuity import PostgresRecentStore, RecentRequest
from services.database import PostgresPool
from services.deployment.runtime import ModelRuntime
from services.usage.migrations import SQL_DIR
from shared.settings import Settings
from tests.conftest import wait_in_portal

pytestmark = pytest.mark.integration

GLOBALS = tuple(range(40, 72))
KEY = f"recent-key-{uuid.uuid4().hex[:8]}"
OTHER = f"recent-other-{uuid.uuid4().hex[:8]}"


def record(request_id: str, *, expires_in_s: float = 600, owner: str = "key_x") -> RecentRequest:
    now = datetime.now(UTC).replace(microsecond=0)
    return RecentRequest(
        request_id=request_id,
        owner_key_id=owner,
        voice_id="fixed",
        global_tokens=GLOBALS,
        tail_text="你好, and the end\tof it.",
        tail_semantic=tuple(range(8000, 8192)),
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in_s),
    )


async def test_one_container_remembers_and_another_finds_it_until_it_expires(pg_dsn: str) -> None:
    pools = PostgresPool(pg_dsn), PostgresPool(pg_dsn)
    writer, reader = PostgresRecentStore(pools[0]), PostgresRecentStore(pools[1])  # two containers
    kept, expired = record(f"r-{uuid.uuid4().hex}"), record(f"r-{uuid.uuid4().hex}", expires_in_s=-1)
    try:
        await writer.put(kept)
        await writer.put(kept)  # a repeat is ignored
        await writer.put(expired)
        assert await reader.get(kept.request_id) == kept
        assert await reader.get(expired.request_id) is None
        writer._purged_at = float("-inf")  # the next write purges (at most once a minute otherwise)
        await writer.put(record(f"r-{uuid.uuid4().hex}"))
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM tts_recent_requests WHERE request_id = $1", expired.request_id
                )
                == 0
            )
        finally:
            await conn.close()
    finally:
        for pool in pools:
            await pool.close()


async def test_the_migration_is_idempotent_bounded_and_row_level_secured(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute((SQL_DIR / "006_recent_requests.sql").read_text())
        assert await conn.fetchval(
            "SELECT relrowsecurity FROM pg_class WHERE relname = 'tts_recent_requests'"
        )
        with pytest.raises(
            asyncpg.CheckViolationError
        ):  # more than 6 s of speech is refused by the table too
            await conn.execute(
                "INSERT INTO tts_recent_requests (request_id, owner_key_id, voice_id, global_tokens, tail_text, "
                "tail_semantic, expires_at) VALUES ($1, 'k', 'v', $2, 't', $3, now())",
                f"r-{uuid.uuid4().hex}",
                list(GLOBALS),
                list(range(301)),
            )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def two_apps(pg_dsn: str, demo_model_dir: Path) -> Iterator[tuple[TestClient, TestClient]]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys=f"{KEY},{OTHER}",
        warmup=False,
        log_json=False,
        sr_enabled=False,
        database_url=pg_dsn,
        key_backend="static",
        request_log_sink="none",
        default_max_tokens=60,
        rate_limit_per_minute=10_000,
    )
    assert settings.resolved_voice_store == "postgres"
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as first:
        wait_in_portal(first, lambda: runtime.ready)
        other_runtime = ModelRuntime(settings)
        with TestClient(create_app(settings, runtime=other_runtime)) as second:
            wait_in_portal(second, lambda: other_runtime.ready)
            yield first, second


def test_a_request_made_on_one_container_is_continued_and_kept_on_another(two_apps) -> None:
    first, second = two_apps
    headers = {"Authorization": f"Bearer {KEY}"}
    assert first.app.state.services.speech.continuity.store.name == "postgres"
    made = first.post(
        "/v1/tts/generate",
        headers=headers,
        json={"text": "Made on the first one.", "speaker": "fixed", "seed": 2},
    )
    assert made.status_code == 200, made.text
    request_id = made.headers["X-Server-Request-ID"]
    stitched = second.post(
        "/v1/tts/generate",
        headers=headers,
        json={"text": "Continued on the second.", "previous_request_ids": [request_id]},
    )
    assert stitched.status_code == 200, stitched.text
    kept = second.post(
        "/v1/audio/voices", headers=headers, json={"from_request_id": request_id, "name": "Kept"}
    )
    assert kept.status_code == 201, kept.text
    assert kept.json()["global_tokens"] == list(first.app.state.runtime.voices.resolve("fixed").global_tokens)
    again = first.post(
        "/v1/tts/generate",
        headers=headers,
        json={"text": "Made on the first one.", "speaker": kept.json()["id"], "seed": 2},
    )
    assert again.status_code == 200 and again.content == made.content
    other = second.post(
        "/v1/tts/generate",
        headers={"Authorization": f"Bearer {OTHER}"},
        json={"text": "Not mine.", "previous_request_ids": [request_id]},
    )
    assert other.status_code == 404 and other.json()["error"]["code"] == "REQUEST_NOT_FOUND"
