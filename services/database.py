"""The process's database connections: one asyncpg pool (and one Supabase client) that the key store, the
request log and the voice library share, so a container opens one set of connections, not one per feature.

`AccessServices` builds them once per app from the settings and hands the same objects to both users; the pool is
created on first use (under a lock: two first requests must not open two pools) and closed once, by its owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from typing import Any

from shared.settings import Settings


class PostgresPool:
    """A lazily created asyncpg pool. `min_size=0`: no idle connections kept that are not needed; after the server
    restarts, dead connections fail once and the caller's retry runs on fresh ones."""

    def __init__(
        self, dsn: str, *, max_connections: int = 6, timeout_s: float = 5.0, command_timeout_s: float = 10.0
    ) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        self.timeout_s = (
            timeout_s  # to get a connection: an outage answers quickly (auth falls back to its cache)
        )
        self.command_timeout_s = command_timeout_s
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        import asyncpg

        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=0,
                        max_size=self.max_connections,
                        timeout=self.timeout_s,
                        command_timeout=self.command_timeout_s,
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)


class DatabaseClients:
    """What the settings ask for: the PostgreSQL pool and/or the Supabase client, built once, shared."""

    def __init__(self, settings: Settings) -> None:
        users = (settings.access.key_backend, settings.usage.request_log_sink, settings.resolved_voice_store)
        uses_postgres = "postgres" in users
        uses_supabase = "supabase" in users
        self.postgres = (
            PostgresPool(settings.databases.database_url)
            if uses_postgres and settings.databases.database_url
            else None
        )
        self._supabase_args = (
            (settings.databases.supabase_url, settings.databases.supabase_key) if uses_supabase else None
        )
        self._supabase: Any = None

    @property
    def supabase(self) -> Any:
        """The Supabase client (created on first use; the import is heavy)."""
        if self._supabase is None and self._supabase_args is not None:
            url, key = self._supabase_args
            if url and key:
                self._supabase = make_supabase_client(url, key)
        return self._supabase

    async def close(self) -> None:
        if self.postgres is not None:
            await self.postgres.close()


def make_supabase_client(url: str, key: str, timeout_s: float = 10.0) -> Any:
    """A supabase-py sync client without PostgREST's own blocking retries (callers retry themselves)."""
    from supabase import ClientOptions, create_client

    options = ClientOptions(
        postgrest_client_timeout=timeout_s,
        postgrest_client_retry=False,
        auto_refresh_token=False,
        persist_session=False,
    )
    client = create_client(url, key, options)
    with warnings.catch_warnings():
        # supabase-py passes its own timeout/verify to postgrest-py, which calls them deprecated; not ours.
        warnings.simplefilter("ignore", DeprecationWarning)
        _ = client.postgrest  # built lazily; build it here, inside the filter
    return client
