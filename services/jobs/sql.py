"""The job stores' SQL, written once for SQLite (store.py) and PostgreSQL (store_postgres.py).

Statements use PostgreSQL's numbered parameters (`$1`), `{now}` for the current time in epoch seconds and `{length}`
for the character count function, `{octets}` for a text's UTF-8 bytes; `Dialect.render` turns them into one database's SQL (SQLite's `?1`, and the
store's clock as the SQLite function `tts_now()`, so tests can move it). Where the databases need different
statements (a claim's row lock, a renewal in one round trip) the store writes its own from these pieces.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

JOB_COLUMNS = (
    "id, key_id, key_hash, title, options, status, created_at, error_code, error_message, book_done, finished_at, "
    "lease_owner, lease_expires, heartbeat_at"
)
# The job's chapters, each without its text (its length instead) but chapter $2's (-1: none): $1 is the job id.
CHAPTERS = (
    "SELECT idx, title, CASE WHEN idx = $2 THEN text ELSE '' END, status, audio_seconds, render_seconds, "
    "request_id, {length}(text) FROM tts_job_chapters WHERE job_id = $1 ORDER BY idx"
)
# The claim order: the key whose last claim is oldest (a key never served first), then its oldest job.
TURN_ORDER = "(SELECT max(t.claimed_at) FROM tts_jobs t WHERE t.key_id = tts_jobs.key_id), created_at, id"
# Every kept job's chapters not rendered, whatever the job's status: a failed or cancelled job can be resumed, so
# its text counts until the job is deleted or expires.
QUEUED_CHARACTERS = (
    "SELECT sum({length}(c.text)) FROM tts_job_chapters c JOIN tts_jobs j ON j.id = c.job_id "
    "WHERE j.key_id = $1 AND c.status != 'done'"
)
# The UTF-8 bytes of every kept job's text (chapters and title), counted with its files against the stored quota.
STORED_TEXT_BYTES = (
    "SELECT COALESCE((SELECT sum({octets}(c.text)) FROM tts_job_chapters c JOIN tts_jobs j ON j.id = c.job_id "
    "WHERE j.key_id = $1), 0) + COALESCE((SELECT sum({octets}(title)) FROM tts_jobs WHERE key_id = $1), 0)"
)
INSERT_JOB = (
    "INSERT INTO tts_jobs (id, key_id, key_hash, title, options, status, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
INSERT_CHAPTER = "INSERT INTO tts_job_chapters (job_id, idx, title, text, status) VALUES ($1, $2, $3, $4, $5)"
JOB_BY_ID = f"SELECT {JOB_COLUMNS} FROM tts_jobs WHERE id = $1"
KEYS_JOB = f"SELECT {JOB_COLUMNS} FROM tts_jobs WHERE id = $1 AND key_id = $2"
KEYS_JOBS = f"SELECT {JOB_COLUMNS} FROM tts_jobs WHERE key_id = $1 ORDER BY created_at DESC, id LIMIT $2"
KEYS_JOB_IDS = "SELECT id FROM tts_jobs WHERE key_id = $1"
# A job's lease is free: never taken, given back, or expired.
CLAIMABLE = "status IN ('queued', 'running') AND lease_expires < {now}"
NEXT_CHAPTER = "SELECT min(idx) FROM tts_job_chapters WHERE job_id = $1 AND status != 'done'"
RELEASE = "UPDATE tts_jobs SET lease_expires = 0, lease_owner = NULL WHERE id = $1 AND lease_owner = $2"
SET_CHAPTER = (
    "UPDATE tts_job_chapters SET status = $3, audio_seconds = $4, render_seconds = $5, request_id = $6 "
    "WHERE job_id = $1 AND idx = $2"
)
FINISH = (
    "UPDATE tts_jobs SET status = CASE WHEN status = 'cancelled' THEN status ELSE $3 END, "
    "error_code = COALESCE(error_code, $4), error_message = COALESCE(error_message, $5), "
    "book_done = $6, lease_owner = NULL, lease_expires = 0, finished_at = COALESCE(finished_at, {now}) "
    "WHERE id = $1 AND lease_owner = $2"
)
CANCEL = (
    "UPDATE tts_jobs SET status = 'cancelled', finished_at = {now} WHERE id = $1 AND key_id = $2 "
    "AND status IN ('queued', 'running')"
)
RESUME = (
    "UPDATE tts_jobs SET status = 'queued', error_code = NULL, error_message = NULL, "
    "finished_at = NULL, lease_owner = NULL, lease_expires = 0 WHERE id = $1 AND key_id = $2 "
    "AND status IN ('failed', 'cancelled') AND (lease_owner IS NULL OR lease_expires < {now})"
)
RESUME_CHAPTERS = "UPDATE tts_job_chapters SET status = 'pending' WHERE job_id = $1 AND status = 'failed'"
EXPIRED = (
    "SELECT id FROM tts_jobs WHERE status IN ('done', 'failed', 'cancelled') "
    "AND finished_at IS NOT NULL AND finished_at < {now} - $1 ORDER BY finished_at LIMIT $2"
)
DELETE = (
    "DELETE FROM tts_jobs WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR key_id = $2) "
    "AND status IN ('done', 'failed', 'cancelled') AND (lease_owner IS NULL OR lease_expires < {now})"
)

_NUMBERED = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Dialect:
    now: str  # the current time in epoch seconds
    length: str  # the character count function
    octets: str  # the UTF-8 byte count function
    parameter: str  # what a numbered parameter's number follows: `$` (PostgreSQL) or `?` (SQLite)

    def render(self, statement: str) -> str:
        """`statement` in this database's SQL; each one is rendered once (the stores render at every call)."""
        return _rendered(self, statement)


@functools.cache
def _rendered(dialect: Dialect, statement: str) -> str:
    text = statement.format(now=dialect.now, length=dialect.length, octets=dialect.octets)
    return text if dialect.parameter == "$" else _NUMBERED.sub(rf"{dialect.parameter}\1", text)


# SQLite reads the store's own clock (a function the store registers on its connection); PostgreSQL the database's,
# so replicas with skewed clocks still never hold one job at once.
SQLITE = Dialect(now="tts_now()", length="length", octets="tts_octets", parameter="?")
POSTGRES = Dialect(
    now="extract(epoch from clock_timestamp())", length="char_length", octets="octet_length", parameter="$"
)
