"""API key records: hashed, never stored in the clear; the errors key checks raise.

A key is only ever stored as the SHA-256 hex digest of its UTF-8 bytes. Logs name a key by its `key_id`,
never by the key or its hash. Credits: 1 credit = 1 character of request text (services/usage/credits.py);
`credit_balance` None means unlimited.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

logger = logging.getLogger("services.access")

KeyStatus = Literal["active", "suspended", "revoked"]
KEY_STATUSES: tuple[str, ...] = ("active", "suspended", "revoked")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Longer "keys" are refused without hashing or a store round trip.
MAX_KEY_CHARS = 512

RECORD_COLUMNS = (
    "key_id",
    "key_hash",
    "owner",
    "status",
    "expires_at",
    "rate_limit_per_minute",
    "max_concurrent",
    "credit_balance",
    "created_at",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def hash_key(raw_key: str) -> str:
    """The stored form of a key: SHA-256 hex digest of its UTF-8 bytes. A lone surrogate (a JSON `"\\ud800"` in a
    socket's first message) is hashed as its own bytes: such a key is merely unknown (401), never a crash."""
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


def derive_key_id(raw_key: str) -> str:
    """A loggable id for a plain key from settings. Domain-separated, so it is not a prefix of the hash."""
    return "key_" + hashlib.sha256(b"tts-key-id\x00" + raw_key.encode("utf-8")).hexdigest()[:16]


def generate_api_key() -> str:
    """A new random key (256 bits). Show it to its owner once; store only `hash_key(key)`."""
    return "tts_" + secrets.token_urlsafe(32)


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class ApiKeyRecord:
    """One API key as stored. `None` limits mean "use the service default"; `None` balance means unlimited."""

    key_id: str
    key_hash: str = field(repr=False)
    owner: str = ""
    status: KeyStatus = "active"
    expires_at: datetime | None = None
    rate_limit_per_minute: int | None = None
    max_concurrent: int | None = None
    credit_balance: int | None = None
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        if not _HEX64.match(self.key_hash):
            raise ValueError(f"key {self.key_id}: key_hash must be 64 lowercase hex characters (SHA-256)")
        if self.status not in KEY_STATUSES:
            raise ValueError(f"key {self.key_id}: status must be one of {', '.join(KEY_STATUSES)}")

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> ApiKeyRecord:
        """From a database row, a PostgREST JSON object or an entry of the static key file."""
        return cls(
            key_id=str(row["key_id"]),
            key_hash=str(row["key_hash"]).lower(),
            owner=str(row.get("owner") or ""),
            status=row.get("status") or "active",
            expires_at=_parse_time(row.get("expires_at")),
            rate_limit_per_minute=_opt_int(row.get("rate_limit_per_minute")),
            max_concurrent=_opt_int(row.get("max_concurrent")),
            credit_balance=_opt_int(row.get("credit_balance")),
            created_at=_parse_time(row.get("created_at")),
        )


def anonymous_record() -> ApiKeyRecord:
    """The identity used when auth is disabled (development only): one shared, unlimited key."""
    return ApiKeyRecord(key_id="anonymous", key_hash="0" * 64, owner="auth disabled")


class AuthError(Exception):
    """A refused credential. `code`/`status` map onto the API's error envelope."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


class KeyConfigError(ValueError):
    """The key settings cannot be served as given (a key file unreadable or malformed, a backend without its
    database): said at start-up, so the service refuses to start rather than answer every request 401 or 503."""


class KeyStoreUnavailable(Exception):
    """The store could not answer (network, server down). Never carries key material."""


@dataclass(frozen=True)
class DebitResult:
    """Outcome of an atomic debit: `ok` False when the balance was short (or the key vanished)."""

    ok: bool
    balance: int | None
