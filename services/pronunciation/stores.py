"""Where pronunciation dictionaries live, beside the custom voices: PostgreSQL (`tts_pronunciation_dictionaries`,
deploy/sql/012_pronunciation_dictionaries.sql) when the voice store is PostgreSQL, one JSON file per dictionary under
`TTS_VOICE_DIR/pronunciation` when it is the file store, nowhere otherwise (creating one is refused). Every call reads
through to the backend, as the voice store does."""

from __future__ import annotations

import asyncio
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from services.database import DatabaseClients, PostgresPool
from services.errors import ServiceError
from services.pronunciation.records import DictionaryRecord, is_dictionary_id
from shared.files import write_json_atomically
from shared.settings import Settings

logger = logging.getLogger("services.pronunciation")
T = TypeVar("T")


def unavailable(store: str, detail: str) -> ServiceError:
    return ServiceError(
        "SERVICE_UNAVAILABLE",
        f"The pronunciation dictionaries ({store}) are unreachable ({detail}); retry shortly.",
        retry_after=5,
    )


class DictionaryStore(ABC):
    """`owner` None means any owner (the admin); otherwise only that key's dictionaries."""

    name = "base"

    @abstractmethod
    async def insert(self, record: DictionaryRecord) -> None: ...

    @abstractmethod
    async def get(self, dictionary_id: str) -> DictionaryRecord | None: ...

    @abstractmethod
    async def list(self, owner: str | None) -> list[DictionaryRecord]:
        """Oldest first."""

    @abstractmethod
    async def delete(self, dictionary_id: str, owner: str | None) -> bool: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class NoDictionaryStore(DictionaryStore):
    """A deployment that keeps no files and no PostgreSQL (Supabase, `TTS_VOICE_STORE=none`)."""

    name = "none"

    async def insert(self, record: DictionaryRecord) -> None:
        raise ServiceError(
            "VOICE_LIBRARY_UNAVAILABLE",
            "Pronunciation dictionaries cannot be saved here: they live in PostgreSQL (TTS_DATABASE_URL) or "
            "the file store (TTS_VOICE_STORE=file); send a request's own 'lexicon' instead.",
        )

    async def get(self, dictionary_id: str) -> DictionaryRecord | None:
        return None

    async def list(self, owner: str | None) -> list[DictionaryRecord]:
        return []

    async def delete(self, dictionary_id: str, owner: str | None) -> bool:
        return False


class FileDictionaryStore(DictionaryStore):
    """One JSON file per dictionary (`<dir>/<id>.json`), written to a temporary file and moved into place."""

    name = "file"

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def _path(self, dictionary_id: str) -> Path | None:
        return self.directory / f"{dictionary_id}.json" if is_dictionary_id(dictionary_id) else None

    def _write(self, record: DictionaryRecord) -> None:
        path = self._path(record.dictionary_id)
        assert path is not None
        write_json_atomically(path, record.to_row())

    def _read(self, path: Path) -> DictionaryRecord | None:
        try:
            return DictionaryRecord.from_row(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "unreadable dictionary file skipped",
                extra={"path": str(path), "error_class": type(exc).__name__},
            )
            return None

    def _get(self, dictionary_id: str) -> DictionaryRecord | None:
        path = self._path(dictionary_id)
        return None if path is None else self._read(path)

    def _list(self, owner: str | None) -> list[DictionaryRecord]:
        if not self.directory.is_dir():
            return []
        records = [r for p in self.directory.glob("*.json") if (r := self._read(p)) is not None]
        mine = [r for r in records if owner is None or r.owner_key_id == owner]
        return sorted(mine, key=lambda r: (r.created_at, r.dictionary_id))

    def _delete(self, dictionary_id: str, owner: str | None) -> bool:
        record = self._get(dictionary_id)
        if record is None or (owner is not None and record.owner_key_id != owner):
            return False
        try:
            self._path(dictionary_id).unlink()  # type: ignore[union-attr]
        except FileNotFoundError:
            return False
        return True

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise unavailable(self.name, type(exc).__name__) from None

    async def insert(self, record: DictionaryRecord) -> None:
        await self._call(self._write, record)

    async def get(self, dictionary_id: str) -> DictionaryRecord | None:
        return await self._call(self._get, dictionary_id)

    async def list(self, owner: str | None) -> list[DictionaryRecord]:
        return await self._call(self._list, owner)

    async def delete(self, dictionary_id: str, owner: str | None) -> bool:
        return await self._call(self._delete, dictionary_id, owner)


_COLUMNS = ("dictionary_id", "version_id", "owner_key_id", "name", "description", "rules", "created_at")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM tts_pronunciation_dictionaries"


class PostgresDictionaryStore(DictionaryStore):
    name = "postgres"

    def __init__(self, dsn: str | None = None, *, pool: PostgresPool | None = None) -> None:
        if pool is None and not dsn:
            raise ValueError("PostgresDictionaryStore needs a DSN or a pool")
        self._owns_pool = pool is None
        self._pool = pool or PostgresPool(str(dsn), max_connections=2)

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        import asyncpg

        try:
            pool = await self._pool.get()
            async with pool.acquire() as conn:
                return await getattr(conn, method)(query, *args)
        except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
            raise unavailable(self.name, type(exc).__name__) from None
        except asyncpg.PostgresError as exc:  # a missing table (migrations not applied) and the like
            raise unavailable(self.name, f"{type(exc).__name__} {exc.sqlstate}") from None

    @staticmethod
    def _record(row: Any) -> DictionaryRecord:
        data = dict(row)
        rules = data["rules"]
        data["rules"] = json.loads(rules) if isinstance(rules, str) else rules
        data["created_at"] = data["created_at"].timestamp()
        return DictionaryRecord.from_row(data)

    async def insert(self, record: DictionaryRecord) -> None:
        row = record.to_row()
        await self._run(
            "execute",
            f"INSERT INTO tts_pronunciation_dictionaries ({', '.join(_COLUMNS)}) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
            row["dictionary_id"],
            row["version_id"],
            row["owner_key_id"],
            row["name"],
            row["description"],
            json.dumps(row["rules"]),
            datetime.fromtimestamp(record.created_at, UTC),
        )

    async def get(self, dictionary_id: str) -> DictionaryRecord | None:
        row = await self._run("fetchrow", f"{_SELECT} WHERE dictionary_id = $1", dictionary_id)
        return None if row is None else self._record(row)

    async def list(self, owner: str | None) -> list[DictionaryRecord]:
        if owner is None:
            rows = await self._run("fetch", f"{_SELECT} ORDER BY created_at, dictionary_id")
        else:
            rows = await self._run(
                "fetch", f"{_SELECT} WHERE owner_key_id = $1 ORDER BY created_at, dictionary_id", owner
            )
        return [self._record(r) for r in rows]

    async def delete(self, dictionary_id: str, owner: str | None) -> bool:
        if owner is None:
            result = await self._run(
                "execute",
                "DELETE FROM tts_pronunciation_dictionaries WHERE dictionary_id = $1",
                dictionary_id,
            )
        else:
            result = await self._run(
                "execute",
                "DELETE FROM tts_pronunciation_dictionaries WHERE dictionary_id = $1 AND owner_key_id = $2",
                dictionary_id,
                owner,
            )
        return str(result).endswith(" 1")

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()


def build_dictionary_store(settings: Settings, databases: DatabaseClients | None = None) -> DictionaryStore:
    kind = settings.resolved_voice_store
    if kind == "postgres" and settings.databases.database_url:
        pool = databases.postgres if databases is not None else None
        return PostgresDictionaryStore(settings.databases.database_url, pool=pool)
    if kind == "file":
        return FileDictionaryStore(Path(settings.voices.voice_dir) / "pronunciation")
    return NoDictionaryStore()
