"""Custom voices in Supabase: table `tts_voices` (deploy/sql/005_voices.sql) through PostgREST.

supabase-py's client is synchronous: every call runs in a worker thread, as the request-log sink's do. The service
role key is needed (row-level security is on with no policies, so the anon key sees nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from services.database import make_supabase_client
from services.voice_library.records import VoiceRecord
from services.voice_library.store import VoiceStore, VoiceStoreUnavailable

TABLE = "tts_voices"


class SupabaseVoiceStore(VoiceStore):
    name = "supabase"

    def __init__(self, url: str | None = None, key: str | None = None, *, client: Any = None) -> None:
        if client is None:
            if not url or not key:
                raise ValueError("SupabaseVoiceStore needs supabase_url and supabase_key")
            client = make_supabase_client(url, key)
        self._client = client

    async def _call(self, fn: Callable[[], Any]) -> list[dict[str, Any]]:
        try:
            response = await asyncio.to_thread(fn)
        except Exception as exc:
            # The error may echo row data; report only its class and PostgREST code.
            raise VoiceStoreUnavailable(
                self.name, f"{type(exc).__name__} {getattr(exc, 'code', '') or ''}".strip()
            ) from None
        data = response.data if response is not None else None
        return [data] if isinstance(data, dict) else list(data or [])

    def _table(self) -> Any:
        return self._client.table(TABLE)

    async def insert(self, record: VoiceRecord) -> None:
        from postgrest.types import ReturnMethod

        row = record.to_json_row()
        await self._call(lambda: self._table().insert(row, returning=ReturnMethod.minimal).execute())

    async def get(self, voice_id: str) -> VoiceRecord | None:
        rows = await self._call(lambda: self._table().select("*").eq("voice_id", voice_id).limit(1).execute())
        return VoiceRecord.from_row(rows[0]) if rows else None

    async def list(self, owner: str | None) -> list[VoiceRecord]:
        def query() -> Any:
            builder = self._table().select("*")
            if owner is not None:
                builder = builder.eq("owner_key_id", owner)
            return builder.order("created_at").order("voice_id").execute()

        return [VoiceRecord.from_row(row) for row in await self._call(query)]

    async def delete(self, voice_id: str, owner: str | None) -> bool:
        def query() -> Any:
            builder = self._table().delete().eq("voice_id", voice_id)  # returns the deleted rows
            if owner is not None:
                builder = builder.eq("owner_key_id", owner)
            return builder.execute()

        return bool(await self._call(query))
