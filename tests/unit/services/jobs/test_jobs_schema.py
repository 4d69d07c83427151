"""The jobs schema is written once (services/jobs/schema.py): the SQLite store's tables and the PostgreSQL
migrations in deploy/sql must define the same tables, columns (with their types) and indexes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from services.jobs.schema import JOB_TABLES, POSTGRES_TYPES, sqlite_schema
from services.jobs.sql import SQLITE, Dialect

SQL_DIR = Path(__file__).resolve().parents[4] / "deploy" / "sql"
JOB_MIGRATIONS = ("011_jobs.sql", "013_job_retention.sql", "014_job_turns.sql")

Shape = tuple[dict[str, dict[str, str]], dict[str, tuple[str, tuple[str, ...], str | None]]]


def postgres_shape() -> Shape:
    """Tables (column -> type) and indexes (name -> table, columns, condition) the job migrations define, in order."""
    tables: dict[str, dict[str, str]] = {}
    indexes: dict[str, tuple[str, tuple[str, ...], str | None]] = {}
    text = "\n".join((SQL_DIR / name).read_text(encoding="utf-8") for name in JOB_MIGRATIONS)
    text = re.sub(r"--[^\n]*", "", text)
    for statement in (s.strip() for s in text.split(";")):
        if m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*)\)$", statement, re.S):
            columns = tables.setdefault(m[1], {})
            for line in (part.strip() for part in m[2].split(",\n")):
                if not line.startswith("PRIMARY KEY"):
                    name, rest = line.split(" ", 1)
                    columns[name] = (
                        rest.split(" NOT NULL")[0].split(" PRIMARY KEY")[0].split(" REFERENCES")[0]
                    )
        elif m := re.match(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+) (.*)$", statement, re.S):
            tables[m[1]][m[2]] = m[3].split(" NOT NULL")[0]
        elif m := re.match(
            r"CREATE INDEX IF NOT EXISTS (\w+) ON (\w+) \(([^)]*)\)(?: WHERE (.*))?$", statement, re.S
        ):
            indexes[m[1]] = (m[2], tuple(c.strip() for c in m[3].split(",")), m[4])
    return tables, indexes


def python_shape() -> Shape:
    tables = {t.name: {c.name: POSTGRES_TYPES[c.type] for c in t.columns} for t in JOB_TABLES}
    indexes = {i.name: (t.name, i.columns, i.where) for t in JOB_TABLES for i in t.indexes}
    return tables, indexes


def test_the_postgres_migrations_and_the_sqlite_schema_agree() -> None:
    migrations = postgres_shape()
    assert migrations[0] and migrations[1]  # the parser read the files
    assert migrations == python_shape()


def test_the_sqlite_schema_has_every_table_column_and_index() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(sqlite_schema())
    tables, indexes = python_shape()
    for table, columns in tables.items():
        assert [row[1] for row in db.execute(f"PRAGMA table_info({table})")] == list(columns)
    named = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert set(indexes) <= named


def test_a_statement_renders_for_each_database() -> None:
    statement = "SELECT id FROM t WHERE a = $1 AND (CAST($2 AS TEXT) IS NULL OR b = $2) AND c < {now} - $10"
    assert SQLITE.render(statement) == (
        "SELECT id FROM t WHERE a = ?1 AND (CAST(?2 AS TEXT) IS NULL OR b = ?2) AND c < tts_now() - ?10"
    )
    postgres = Dialect(now="now()", length="char_length", octets="octet_length", parameter="$")
    assert postgres.render(statement) == statement.replace("{now}", "now()")
