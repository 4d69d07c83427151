"""The PostgreSQL pronunciation dictionary store against a real server (deploy/sql/012 applied by the fixture)."""

from __future__ import annotations

import asyncpg
import pytest

from processing.lexicon import AliasRule, DictionaryLocator
from services.errors import ServiceError
from services.pronunciation import PronunciationDictionaries
from services.pronunciation.dictionaries import Owner
from services.pronunciation.stores import PostgresDictionaryStore
from services.usage.migrations import SQL_DIR

pytestmark = pytest.mark.integration


async def test_postgres_store_keeps_dictionaries_per_key(pg_dsn: str, unique: str) -> None:
    store, other = (
        PostgresDictionaryStore(pg_dsn),
        PostgresDictionaryStore(pg_dsn),
    )  # two containers, one database
    mine, theirs = Owner(f"alice-{unique}"), Owner(f"bob-{unique}")
    rules = [
        AliasRule("nginx", "engine x", case_sensitive=False),
        AliasRule("你好", "ni hao", word_boundaries=False),
    ]
    try:
        made = await PronunciationDictionaries(store).create(mine, "Tech", rules, "terms\nand more")
        seen = PronunciationDictionaries(other)
        got = await seen.get(mine, made.dictionary_id)
        assert got.rules == made.rules and got.description == "terms\nand more"
        assert abs(got.created_at - made.created_at) < 1e-3
        assert [r.dictionary_id for r in await seen.list(mine)] == [made.dictionary_id]
        assert await seen.list(theirs) == []
        with pytest.raises(ServiceError):
            await seen.lexicon_for([DictionaryLocator(made.dictionary_id)], theirs.key_id)
        lexicon = await seen.lexicon_for(
            [DictionaryLocator(made.dictionary_id, made.version_id)], mine.key_id
        )
        assert lexicon.apply("NGINX says 你好吗") == "engine x says ni hao吗"
        for bad in ("x\x00" * 10, "\x00"):
            with pytest.raises(ServiceError) as refused:
                await seen.get(mine, bad)
            assert refused.value.code == "NOT_FOUND"
        with pytest.raises(ServiceError):
            await seen.delete(theirs, made.dictionary_id)
        await seen.delete(mine, made.dictionary_id)
        assert await store.get(made.dictionary_id) is None
    finally:
        await store.close()
        await other.close()


async def test_the_migration_is_idempotent_and_row_level_security_is_on(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute((SQL_DIR / "012_pronunciation_dictionaries.sql").read_text())  # again
        assert await conn.fetchval(
            "SELECT relrowsecurity FROM pg_class WHERE relname = 'tts_pronunciation_dictionaries'"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO tts_pronunciation_dictionaries (dictionary_id, version_id, owner_key_id, name, rules) "
                "VALUES ('short', 'v', 'k', 'n', '[]')"
            )
    finally:
        await conn.close()
