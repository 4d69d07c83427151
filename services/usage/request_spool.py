"""Durable spool for request-log records: on disk as each request ends, gone only once stored.

One SQLite database in WAL mode per process (`spool-<instance>.sqlite3` in TTS_REQUEST_LOG_SPOOL_DIR), holding
each record under its server request id (primary key: appending the same record twice keeps one). The request
logger appends every finished request (an fsync'd WAL append, ~1 ms, in a worker thread) and its writer sends the oldest
records to PostgreSQL/Supabase, deleting them only after the database confirmed the batch. A record therefore
survives a database outage of any length, a full queue, SIGTERM and SIGKILL of the process.

Restart: a process holds an exclusive `flock` on `<file>.lock` for its lifetime. At start it adopts every spool
file in the directory whose lock is free (a previous or crashed process's): it copies their records into its own
spool and removes them, so nothing waits for a process that will never come back. Replays are idempotent: the
database insert skips server ids it already has.

Intents: before a request's first credit is reserved, and again with its details when it is admitted (before any GPU
work), the request log writes an intent row (`intend`: status in_progress, intent=1) under the same server id; the
final record replaces it (`append`). A request refused before it started, whose credits were given back, drops its
intent (`forget_intent`). The
writer reads only final rows. A process that adopts an orphan spool turns the dead process's intents into final
records with status `interrupted` (`credits_charged` 0: the server died, not the client, so nothing is billed, and
the row's settlement refunds every credit journaled for it), so after SIGTERM beyond the graceful window, kill -9 or
an OOM kill every request that reserved credits or was admitted has exactly one row.

Progress: while a request delivers audio, the request log notes on its intent row what has been delivered so far
(`progress`: the audio seconds and the text that audio covers), at most once per second of audio and one write in
flight per request, so an `interrupted` row says what the client heard.

Why SQLite: in the standard library, crash-safe (the WAL is fsync'd per transaction with synchronous=FULL), and
indexed by id for acknowledgement; an append-only file would need its own compaction and ack bookkeeping.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

logger = logging.getLogger("services.usage.request_spool")

PREFIX = "spool-"
SUFFIX = ".sqlite3"


def instance_name() -> str:
    """This process's spool name: the Modal task id in a container, else host and pid."""
    task = os.environ.get("MODAL_TASK_ID")
    return task if task else f"{os.uname().nodename}-{os.getpid()}"


class RequestSpool:
    """`stale_after_s`: for a directory shared by machines (a Modal Volume), where a free `flock` does not prove the
    owner is gone: each spool then keeps a heartbeat file (`<file>.alive`, refreshed by `beat()`, zeroed by
    `close()`), and another spool is adopted only when its heartbeat is older than this."""

    def __init__(
        self, directory: Path, instance: str | None = None, *, stale_after_s: float | None = None
    ) -> None:
        self.directory = Path(directory)
        self.stale_after_s = stale_after_s
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{PREFIX}{instance or instance_name()}{SUFFIX}"
        self._lock_file = open(f"{self.path}.lock", "a+")  # noqa: SIM115 - held for the process lifetime
        fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._db_lock = threading.Lock()
        self._conn = self._open(self.path)
        if stale_after_s is not None:
            self.beat()
        self.adopted = self._adopt_orphans()

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (server_id TEXT PRIMARY KEY, created REAL NOT NULL, "
            "payload TEXT NOT NULL, intent INTEGER NOT NULL DEFAULT 0)"
        )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(spool)")}
        if "intent" not in columns:  # a spool written before intents existed
            conn.execute("ALTER TABLE spool ADD COLUMN intent INTEGER NOT NULL DEFAULT 0")
        if "progress" not in columns:  # a spool written before progress notes existed
            conn.execute("ALTER TABLE spool ADD COLUMN progress TEXT")
        return conn

    def _adopt_orphans(self) -> int:
        adopted = 0
        for other in sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}")):
            if other == self.path:
                continue
            if not self._owner_gone(other):
                continue  # its container may be alive: its heartbeat is recent
            with open(f"{other}.lock", "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live process owns it
                try:
                    source = self._open(other)
                    rows = [
                        _interrupted(row)
                        for row in source.execute(
                            "SELECT server_id, created, payload, intent, progress FROM spool"
                        ).fetchall()
                    ]
                    source.close()
                except sqlite3.DatabaseError as exc:
                    logger.error(
                        "unreadable request-log spool left in place",
                        extra={"file": str(other), "error": str(exc)},
                    )
                    continue
                with self._db_lock:
                    self._conn.execute("BEGIN")
                    self._conn.executemany("INSERT OR IGNORE INTO spool VALUES (?, ?, ?, 0, NULL)", rows)
                    self._conn.execute("COMMIT")
                for leftover in (
                    other,
                    Path(f"{other}-wal"),
                    Path(f"{other}-shm"),
                    Path(f"{other}.lock"),
                    Path(f"{other}.alive"),
                ):
                    leftover.unlink(missing_ok=True)
                adopted += len(rows)
        if adopted:
            logger.info("request-log spool adopted records of earlier processes", extra={"records": adopted})
        return adopted

    def _owner_gone(self, other: Path) -> bool:
        """Without heartbeats the flock decides alone; with them, the other's heartbeat must be stale too."""
        if self.stale_after_s is None:
            return True
        alive = Path(f"{other}.alive")
        try:
            last = float(alive.read_text() or 0) if alive.exists() else other.stat().st_mtime
        except (OSError, ValueError):
            last = 0.0
        return time.time() - last > self.stale_after_s

    def beat(self) -> None:
        """Say this spool's owner is alive (a heartbeat file beside it); call more often than `stale_after_s`."""
        Path(f"{self.path}.alive").write_text(f"{time.time():.3f}")

    @contextlib.contextmanager
    def quiesced(self) -> Iterator[None]:
        """No write in progress and the WAL folded into the database file: a copy of the directory taken now (a
        Modal Volume commit) holds every record appended so far, consistently."""
        with self._db_lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            yield

    # ------------------------------------------------------------------------------------------ queue API
    def intend(self, server_id: str, payload: dict[str, Any]) -> None:
        """A request's intent row (written before its first credit is reserved, completed when it is admitted):
        replaces an earlier intent of the same id; ignored when its final record is already here."""
        with self._db_lock:
            self._conn.execute(
                "INSERT INTO spool VALUES (?, ?, ?, 1, NULL) ON CONFLICT(server_id) DO UPDATE SET "
                "payload = excluded.payload WHERE spool.intent = 1",
                (server_id, time.time(), json.dumps(payload, default=str)),
            )

    def progress(self, server_id: str, delivered: dict[str, Any]) -> None:
        """What a running request has delivered so far, noted on its intent row (replacing the last note); read
        only when the row is recovered as `interrupted`. Ignored without an intent row."""
        with self._db_lock:
            self._conn.execute(
                "UPDATE spool SET progress = ? WHERE server_id = ? AND intent = 1",
                (json.dumps(delivered, default=str), server_id),
            )

    def forget_intent(self, server_id: str) -> None:
        """A request that never started and holds nothing any more: its intent row goes (a final row stays)."""
        with self._db_lock:
            self._conn.execute("DELETE FROM spool WHERE server_id = ? AND intent = 1", (server_id,))

    def append(self, server_id: str, payload: dict[str, Any]) -> None:
        """The final record: replaces the intent row; a final record already here is kept (appends are idempotent)."""
        data = json.dumps(payload, default=str)
        with self._db_lock:
            self._conn.execute("BEGIN")
            self._conn.execute("DELETE FROM spool WHERE server_id = ? AND intent = 1", (server_id,))
            self._conn.execute(
                "INSERT OR IGNORE INTO spool VALUES (?, ?, ?, 0, NULL)", (server_id, time.time(), data)
            )
            self._conn.execute("COMMIT")

    def oldest(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with self._db_lock:
            rows = self._conn.execute(
                "SELECT server_id, payload FROM spool WHERE intent = 0 ORDER BY created, server_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [(server_id, json.loads(payload)) for server_id, payload in rows]

    def remove(self, server_ids: Sequence[str]) -> None:
        if not server_ids:
            return
        with self._db_lock:
            self._conn.execute("BEGIN")
            self._conn.executemany("DELETE FROM spool WHERE server_id = ?", [(i,) for i in server_ids])
            self._conn.execute("COMMIT")

    def depth(self) -> int:
        """Final records waiting for the database (intents of running requests are not counted)."""
        with self._db_lock:
            return int(self._conn.execute("SELECT count(*) FROM spool WHERE intent = 0").fetchone()[0])

    def in_progress(self) -> int:
        with self._db_lock:
            return int(self._conn.execute("SELECT count(*) FROM spool WHERE intent = 1").fetchone()[0])

    def oldest_age_s(self) -> float:
        with self._db_lock:
            created = self._conn.execute("SELECT min(created) FROM spool WHERE intent = 0").fetchone()[0]
        return 0.0 if created is None else max(0.0, time.time() - created)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._db_lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
        if self.stale_after_s is not None:
            Path(f"{self.path}.alive").write_text("0")  # gone: the next container adopts it at once
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()


def _interrupted(row: tuple[str, float, str, int, str | None]) -> tuple[str, float, str]:
    """An adopted row: a dead process's intent becomes its final record, status `interrupted`, nothing charged, with
    what it had delivered (its last progress note: audio seconds, the text that audio covers)."""
    server_id, created, payload, intent, progress = row
    if not intent:
        return server_id, created, payload
    data = json.loads(payload)
    if progress:
        data.update(json.loads(progress))
    data.update(
        status="interrupted",
        error_code="SERVER_INTERRUPTED",
        credits_charged=0,
        completed_at=datetime.now(UTC).isoformat(),
    )
    return server_id, created, json.dumps(data, default=str)


def record_payload(record: Any) -> dict[str, Any]:
    return cast(dict[str, Any], record.to_json_row())


def record_from_payload(cls: type, payload: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    data = {k: v for k, v in payload.items() if k in names}
    for key in ("created_at", "completed_at"):
        if isinstance(data.get(key), str):
            data[key] = datetime.fromisoformat(data[key])
    return cls(**data)
