"""One row of the request log (`tts_requests`): the record, its column order and PostgreSQL types."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RequestRecord:
    """What one request did. Floats that are NaN/inf are written as NULL."""

    request_id: str  # the server's id: unique, the idempotency key of every write
    speaker: str
    text_length: int
    status: str  # completed | failed | cancelled | interrupted (recovered intent of a dead process)
    key_id: str | None = None
    stream: bool = False
    format: str = "wav"
    sample_rate: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    text: str | None = None
    text_chunked: bool = False
    error_code: str | None = None
    ttfb_ms: float | None = None
    rtf: float | None = None
    audio_duration_seconds: float | None = None
    credits_charged: int = 0  # 1 credit = 1 character of request text
    created_at: datetime = field(default_factory=utcnow)
    completed_at: datetime | None = None
    client_request_id: str | None = None  # the client's X-Request-ID (not unique: clients reuse them)
    chunks_retried: int = 0  # generation guards: text chunks generated again (007_guard_counts.sql)
    chunks_cut: int = 0  # streamed text chunks cut at a detection point
    guard_trips: str | None = None  # every trip as guard:action, comma-separated
    # Credits the row's settlement gave back (010_credit_reservations.sql: written by the database when the row is
    # stored; a process sends 0). A row that carries its owed refund here (spooled by a process without reservations)
    # is paid it when stored (009).
    refund_credits: int = 0
    # Credits this request spent on the key-store outage allowance, taken from the balance when the row is stored (at
    # most what it is charged).
    outage_credits: int = 0
    # http | websocket | wyoming | job: what carried the request (010_credit_reservations.sql)
    transport: str | None = None

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        for name in (
            "temperature",
            "top_p",
            "repetition_penalty",
            "ttfb_ms",
            "rtf",
            "audio_duration_seconds",
        ):
            value = row[name]
            row[name] = float(value) if value is not None and math.isfinite(value) else None
        return row

    def to_json_row(self) -> dict[str, Any]:
        """The row with ISO-8601 times, for PostgREST."""
        row = self.to_row()
        for name in ("created_at", "completed_at"):
            if row[name] is not None:
                row[name] = row[name].isoformat()
        return row


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord))
# PostgreSQL array type of each column, for the single-statement unnest() insert.
_PG_TYPES: dict[str, str] = {
    "request_id": "text",
    "speaker": "text",
    "text_length": "int4",
    "status": "text",
    "key_id": "text",
    "stream": "bool",
    "format": "text",
    "sample_rate": "int4",
    "temperature": "float8",
    "top_k": "int4",
    "top_p": "float8",
    "max_tokens": "int4",
    "repetition_penalty": "float8",
    "seed": "int8",
    "text": "text",
    "text_chunked": "bool",
    "error_code": "text",
    "ttfb_ms": "float8",
    "rtf": "float8",
    "audio_duration_seconds": "float8",
    "credits_charged": "int8",
    "created_at": "timestamptz",
    "completed_at": "timestamptz",
    "client_request_id": "text",
    "chunks_retried": "int4",
    "chunks_cut": "int4",
    "guard_trips": "text",
    "refund_credits": "int8",
    "outage_credits": "int8",
    "transport": "text",
}
assert set(_PG_TYPES) == set(COLUMNS)
