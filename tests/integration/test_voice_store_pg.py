"""The PostgreSQL voice store against the real server (deploy/sql/005_voices.sql applied by the fixture)."""

from __future__ import annotations

import asyncpg
import pytest

from services.errors import ServiceError
from services.usage.migrations import SQL_DIR
from services.voice_library.library import Caller, VoiceLibrary
from services.voice_library.postgres_store import PostgresVoiceStore
from shared.settings import Settings
from tests.unit.services.voice_library.test_voice_store import check_store, record

pytestmark = pytest.mark.integration


async def test_postgres_store_keeps_the_contract(pg_dsn: str) -> None:
    store, other = PostgresVoiceStore(pg_dsn), PostgresVoiceStore(pg_dsn)  # two containers, one database
    try:
        await check_store(store, other)
    finally:
        await store.close()
        await other.close()


async def test_arrays_and_times_come_back_exactly(pg_dsn: str) -> None:
    store = PostgresVoiceStore(pg_dsn)
    rec = record(semantic_tokens=tuple(range(1600)), transcript="你好, with a newline\nand a tab\t.")
    try:
        await store.insert(rec)
        assert await store.get(rec.voice_id) == rec
    finally:
        await store.delete(rec.voice_id, None)
        await store.close()


async def test_the_migration_is_idempotent_and_row_level_security_is_on(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute((SQL_DIR / "005_voices.sql").read_text())  # again, on a migrated database
        assert await conn.fetchval("SELECT relrowsecurity FROM pg_class WHERE relname = 'tts_voices'")
        with pytest.raises(asyncpg.CheckViolationError):  # the table refuses what records refuse
            await conn.execute(
                "INSERT INTO tts_voices (voice_id, owner_key_id, name, global_tokens) "
                "VALUES ('voice_x', 'k', 'n', '{1,2}')"
            )
    finally:
        await conn.close()


@pytest.mark.parametrize("voice_id", ["voice_\x00", "\x00", "voice_" + "a" * 31 + "\x00", "voice_\ud800"])
async def test_an_id_postgres_cannot_hold_is_404_not_503(pg_dsn: str, voice_id: str) -> None:
    """`%00` in a voice id reached PostgreSQL, which refuses NUL in text: the answer was 503 naming a database
    error. An id no voice can have is not found, on every library route, without a query."""
    store = PostgresVoiceStore(pg_dsn)
    library = VoiceLibrary(Settings(voice_cache_ttl_s=0), models=None, store=store, references=None)  # type: ignore[arg-type]
    caller = Caller(key_id="k", admin=False)
    try:
        for call in (
            library.get(voice_id, caller),
            library.delete(voice_id, caller),
            library.voice_for(voice_id, "k"),
        ):
            with pytest.raises(ServiceError) as caught:
                await call
            assert caught.value.code == "VOICE_NOT_FOUND"  # 404
    finally:
        await store.close()
