"""Custom voices on local disk: one JSON file per voice (`<dir>/<voice_id>.json`), for a server without a database.

Writes go to a temporary file in the same directory, are flushed to disk, and are moved into place with
`os.replace`, so a reader (or a crash) never sees half a record. Every call reads the directory again: another
process sharing the directory sees creates and deletes at once. Containers that do not share the directory do not
share voices: use PostgreSQL or Supabase for more than one server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from services.voice_library.records import VoiceRecord, is_custom_voice_id
from services.voice_library.store import VoiceStore, VoiceStoreUnavailable
from shared.files import write_json_atomically

logger = logging.getLogger("services.voice_library")
T = TypeVar("T")


class FileVoiceStore(VoiceStore):
    name = "file"

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def _path(self, voice_id: str) -> Path | None:
        # Only well-formed ids become file names: nothing a client sends can name another path.
        return self.directory / f"{voice_id}.json" if is_custom_voice_id(voice_id) else None

    # ------------------------------------------------------------------ blocking parts (run in a thread)
    def _write(self, record: VoiceRecord) -> None:
        path = self._path(record.voice_id)
        assert path is not None  # records validate their id
        self.directory.mkdir(parents=True, exist_ok=True)
        if path.exists():
            raise FileExistsError(record.voice_id)
        write_json_atomically(path, record.to_json_row())

    def _read(self, path: Path) -> VoiceRecord | None:
        try:
            return VoiceRecord.from_row(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None  # deleted meanwhile
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "unreadable voice file skipped", extra={"path": str(path), "error_class": type(exc).__name__}
            )
            return None

    def _list(self, owner: str | None) -> list[VoiceRecord]:
        if not self.directory.is_dir():
            return []
        records = [r for p in self.directory.glob("voice_*.json") if (r := self._read(p)) is not None]
        mine = [r for r in records if owner is None or r.owner_key_id == owner]
        return sorted(mine, key=lambda r: (r.created_at, r.voice_id))

    def _delete(self, voice_id: str, owner: str | None) -> bool:
        path = self._path(voice_id)
        record = None if path is None else self._read(path)
        if record is None or (owner is not None and record.owner_key_id != owner):
            return False
        try:
            path.unlink()  # type: ignore[union-attr]
        except FileNotFoundError:
            return False
        return True

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:  # a thin thread hop
        try:
            return await asyncio.to_thread(fn, *args)
        except FileExistsError:
            raise
        except OSError as exc:
            raise VoiceStoreUnavailable(self.name, type(exc).__name__) from None

    # ------------------------------------------------------------------ VoiceStore
    async def insert(self, record: VoiceRecord) -> None:
        await self._call(self._write, record)

    async def get(self, voice_id: str) -> VoiceRecord | None:
        path = self._path(voice_id)
        return None if path is None else await self._call(self._read, path)

    async def list(self, owner: str | None) -> list[VoiceRecord]:
        return await self._call(self._list, owner)

    async def delete(self, voice_id: str, owner: str | None) -> bool:
        return await self._call(self._delete, voice_id, owner)
