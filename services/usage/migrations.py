"""Apply the SQL files in deploy/sql/ to a PostgreSQL database, each once, in file-name order.

Used by the integration tests and by `scripts/apply_migrations` (operators). On Supabase, paste the same
files into the SQL editor (they are idempotent) or run this against the project's direct Postgres DSN.
Run as `python -m services.usage.migrations [DSN]` (DSN defaults to TTS_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

import asyncpg

logger = logging.getLogger("services.usage.migrations")

SQL_DIR = Path(__file__).resolve().parents[2] / "deploy" / "sql"
# Any constant shared by every applier; serialises concurrent runs (parallel test sessions, replicas).
_LOCK_ID = 0x7D5_5E1


async def apply_migrations(dsn: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every `NNN_*.sql` not yet recorded in `schema_migrations`; return the names applied now."""
    files = sorted(p for p in sql_dir.glob("[0-9][0-9][0-9]_*.sql") if p.is_file())
    conn = await asyncpg.connect(dsn, timeout=10)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(filename TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {r["filename"] for r in await conn.fetch("SELECT filename FROM schema_migrations")}
            for path in files:
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute("INSERT INTO schema_migrations (filename) VALUES ($1)", path.name)
                applied_now.append(path.name)
                logger.info("migration applied", extra={"migration": path.name})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await conn.close()
    return applied_now


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply deploy/sql migrations to a PostgreSQL database.")
    parser.add_argument("dsn", nargs="?", default=os.environ.get("TTS_DATABASE_URL"), help="PostgreSQL DSN")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give a DSN or set TTS_DATABASE_URL")
    applied = asyncio.run(apply_migrations(args.dsn))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


if __name__ == "__main__":
    main()
