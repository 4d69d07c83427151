"""The jobs tables, written once: `JOB_TABLES` renders the SQLite store's schema (`sqlite_schema`), and a test
checks that the PostgreSQL migrations (deploy/sql/011_jobs.sql, 013_job_retention.sql, 014_job_turns.sql, applied
by scripts/apply_migrations and never edited once released) define the same tables, columns and indexes. The
migrations stay SQL files because the database applies them in order; the image carries no deploy/ folder, so the
SQLite store cannot read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["text", "real", "integer", "boolean"]
SQLITE_TYPES: dict[ColumnType, str] = {
    "text": "TEXT",
    "real": "REAL",
    "integer": "INTEGER",
    "boolean": "INTEGER",
}
POSTGRES_TYPES: dict[ColumnType, str] = {
    "text": "TEXT",
    "real": "DOUBLE PRECISION",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    constraints: str = ""  # what follows the type: NOT NULL, DEFAULT 0, PRIMARY KEY, REFERENCES ...


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    where: str | None = None  # a partial index's condition


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    indexes: tuple[Index, ...] = ()
    primary_key: tuple[str, ...] = ()  # a composite primary key


JOB_TABLES = (
    Table(
        "tts_jobs",
        (
            Column("id", "text", "PRIMARY KEY"),
            Column("key_id", "text", "NOT NULL"),
            Column("key_hash", "text", "NOT NULL"),
            Column("title", "text"),
            Column("options", "text", "NOT NULL"),
            Column("status", "text", "NOT NULL"),
            Column("created_at", "real", "NOT NULL"),
            Column("error_code", "text"),
            Column("error_message", "text"),
            Column("book_done", "boolean", "NOT NULL DEFAULT 0"),
            Column("lease_owner", "text"),
            Column("lease_expires", "real", "NOT NULL DEFAULT 0"),
            Column("finished_at", "real"),
            Column("claimed_at", "real", "NOT NULL DEFAULT 0"),
            Column("heartbeat_at", "real"),
        ),
        (
            Index("tts_jobs_key", ("key_id", "created_at")),
            Index("tts_jobs_open", ("status", "lease_expires")),
            Index("tts_jobs_finished", ("finished_at",), "finished_at IS NOT NULL"),
            Index("tts_jobs_turns", ("key_id", "claimed_at")),
        ),
    ),
    Table(
        "tts_job_chapters",
        (
            Column("job_id", "text", "NOT NULL REFERENCES tts_jobs (id) ON DELETE CASCADE"),
            Column("idx", "integer", "NOT NULL"),
            Column("title", "text", "NOT NULL"),
            Column("text", "text", "NOT NULL"),
            Column("status", "text", "NOT NULL"),
            Column("audio_seconds", "real"),
            Column("render_seconds", "real"),
            Column("request_id", "text"),
        ),
        primary_key=("job_id", "idx"),
    ),
)


def column_declaration(column: Column, types: dict[ColumnType, str]) -> str:
    """A column's type and constraints, as CREATE TABLE and ALTER TABLE ... ADD COLUMN write them."""
    return f"{types[column.type]} {column.constraints}".strip()


def sqlite_schema(tables: tuple[Table, ...] = JOB_TABLES) -> str:
    """CREATE TABLE and CREATE INDEX statements (IF NOT EXISTS) for SQLite."""
    statements = []
    for table in tables:
        lines = [f"    {c.name} {column_declaration(c, SQLITE_TYPES)}" for c in table.columns]
        if table.primary_key:
            lines.append(f"    PRIMARY KEY ({', '.join(table.primary_key)})")
        statements.append(f"CREATE TABLE IF NOT EXISTS {table.name} (\n" + ",\n".join(lines) + "\n);")
        for index in table.indexes:
            where = f" WHERE {index.where}" if index.where else ""
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {index.name} ON {table.name} ({', '.join(index.columns)}){where};"
            )
    return "\n".join(statements) + "\n"
