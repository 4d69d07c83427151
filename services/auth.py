"""API keys: hashed records, three places to keep them, and an authenticator with a TTL cache.

A key is only ever stored as the SHA-256 hex digest of its UTF-8 bytes. Logs name a key by its `key_id`,
never by the key or its hash.

Outcomes (code, HTTP status):
  - no key in the request, unknown key, revoked key  -> INVALID_API_KEY 401 (revocation is permanent, so
    a revoked key is answered like one that never existed; the message says which)
  - key past its `expires_at`                         -> EXPIRED_API_KEY 401
  - suspended key (known, temporarily not allowed)    -> KEY_SUSPENDED 403
  - the key store cannot be reached and nothing is cached for the key -> SERVICE_UNAVAILABLE 503

Credits: 1 credit = 1 character of request text (see services/credits.py). `credit_balance` None means
unlimited.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from shared.settings import Settings

logger = logging.getLogger("services.auth")

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
    """The stored form of a key: SHA-256 hex digest of its UTF-8 bytes."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


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


class KeyStoreUnavailable(Exception):
    """The store could not answer (network, server down). Never carries key material."""


@dataclass(frozen=True)
class DebitResult:
    """Outcome of an atomic debit: `ok` False when the balance was short (or the key vanished)."""

    ok: bool
    balance: int | None


class KeyStore(ABC):
    """Where key records live. Lookups are by hash; credit moves are atomic in the store."""

    name: str = "base"

    @abstractmethod
    async def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    async def debit_credits(self, key_id: str, amount: int) -> DebitResult:
        """Take `amount` only when the balance covers it (unlimited keys always succeed)."""

    @abstractmethod
    async def refund_credits(self, key_id: str, amount: int) -> int | None:
        """Give `amount` back; returns the new balance (None: unlimited or unknown key)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


# --- static -------------------------------------------------------------------------------------


class StaticKeyStore(KeyStore):
    """Keys from settings (plain keys, hashed at load) and/or a JSON file of hashed records. In memory."""

    name = "static"

    def __init__(self, records: Iterable[ApiKeyRecord] = ()) -> None:
        self._by_hash: dict[str, ApiKeyRecord] = {}
        self._hash_by_id: dict[str, str] = {}
        for record in records:
            self.add(record)

    def add(self, record: ApiKeyRecord) -> None:
        if record.key_id in self._hash_by_id and self._hash_by_id[record.key_id] != record.key_hash:
            raise ValueError(f"duplicate key_id {record.key_id}")
        self._by_hash[record.key_hash] = record
        self._hash_by_id[record.key_id] = record.key_hash

    def add_plain_key(self, raw_key: str, **fields: Any) -> ApiKeyRecord:
        record = ApiKeyRecord(
            key_id=fields.pop("key_id", derive_key_id(raw_key)), key_hash=hash_key(raw_key), **fields
        )
        self.add(record)
        return record

    def set_status(self, key_id: str, status: KeyStatus) -> bool:
        key_hash = self._hash_by_id.get(key_id)
        if key_hash is None:
            return False
        self._by_hash[key_hash] = replace(self._by_hash[key_hash], status=status)
        return True

    @classmethod
    def from_plain_keys(cls, keys: Iterable[str], owner: str = "static") -> StaticKeyStore:
        store = cls()
        for raw in keys:
            if raw.strip():
                store.add_plain_key(raw.strip(), owner=owner)
        return store

    @classmethod
    def from_file(cls, path: Path) -> StaticKeyStore:
        """JSON: a list of records, or {"keys": [...]}; each needs key_id and key_hash (sha256 hex)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = data.get("keys", []) if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a list of key records or {{'keys': [...]}}")
        return cls(ApiKeyRecord.from_mapping(entry) for entry in entries)

    @classmethod
    def from_settings(cls, settings: Settings) -> StaticKeyStore:
        store = cls.from_file(settings.api_keys_file) if settings.api_keys_file else cls()
        for raw in settings.api_keys.split(","):
            if raw.strip():
                store.add_plain_key(raw.strip(), owner="static")
        return store

    def __len__(self) -> int:
        return len(self._by_hash)

    async def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        return self._by_hash.get(key_hash)

    async def debit_credits(self, key_id: str, amount: int) -> DebitResult:
        # No await between read and write: atomic on the event loop.
        key_hash = self._hash_by_id.get(key_id)
        if key_hash is None:
            return DebitResult(False, None)
        record = self._by_hash[key_hash]
        if record.credit_balance is None:
            return DebitResult(True, None)
        if record.credit_balance < amount:
            return DebitResult(False, record.credit_balance)
        self._by_hash[key_hash] = replace(record, credit_balance=record.credit_balance - amount)
        return DebitResult(True, record.credit_balance - amount)

    async def refund_credits(self, key_id: str, amount: int) -> int | None:
        key_hash = self._hash_by_id.get(key_id)
        if key_hash is None or self._by_hash[key_hash].credit_balance is None:
            return None
        record = self._by_hash[key_hash]
        balance = (record.credit_balance or 0) + amount
        self._by_hash[key_hash] = replace(record, credit_balance=balance)
        return balance


# --- PostgreSQL ---------------------------------------------------------------------------------

_SELECT_BY_HASH = f"SELECT {', '.join(RECORD_COLUMNS)} FROM api_keys WHERE key_hash = $1"
_DEBIT = (
    "UPDATE api_keys SET credit_balance = credit_balance - $2, updated_at = now() "
    "WHERE key_id = $1 AND (credit_balance IS NULL OR credit_balance >= $2) RETURNING credit_balance"
)
_REFUND = (
    "UPDATE api_keys SET credit_balance = credit_balance + $2, updated_at = now() "
    "WHERE key_id = $1 AND credit_balance IS NOT NULL RETURNING credit_balance"
)


class PostgresKeyStore(KeyStore):
    """Table `api_keys` (deploy/sql/002_api_keys.sql) through an asyncpg pool created on first use."""

    name = "postgres"

    def __init__(self, dsn: str, *, max_connections: int = 4, timeout_s: float = 5.0) -> None:
        self._dsn = dsn
        self._max = max_connections
        self._timeout = timeout_s
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()

    async def _get_pool(self) -> Any:
        import asyncpg

        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=self._max,
                        timeout=self._timeout,
                        command_timeout=self._timeout,
                    )
        return self._pool

    async def _run(self, method: str, query: str, *args: Any, idempotent: bool = True) -> Any:
        """Run one statement. A dead pooled connection (the server restarted) gets one retry on a fresh one.

        A statement that must not run twice (credit moves) is not retried itself: the connection is
        probed first and only the probe is retried, so a reply lost in flight cannot double-charge.
        """
        import asyncpg

        retryable = (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,  # server shutting down or starting
        )
        for attempt in (0, 1):
            try:
                pool = await self._get_pool()
                async with pool.acquire() as conn:
                    if idempotent:
                        return await getattr(conn, method)(query, *args)
                    await conn.fetchval("SELECT 1")
                    try:
                        return await getattr(conn, method)(query, *args)
                    except retryable as exc:
                        raise KeyStoreUnavailable(f"postgres key store: {type(exc).__name__}") from None
            except retryable as exc:
                if attempt == 1:
                    raise KeyStoreUnavailable(f"postgres key store: {type(exc).__name__}") from None
        raise AssertionError("unreachable")

    async def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self._run("fetchrow", _SELECT_BY_HASH, key_hash)
        return None if row is None else ApiKeyRecord.from_mapping(dict(row))

    async def debit_credits(self, key_id: str, amount: int) -> DebitResult:
        row = await self._run("fetchrow", _DEBIT, key_id, amount, idempotent=False)
        return DebitResult(False, None) if row is None else DebitResult(True, row["credit_balance"])

    async def refund_credits(self, key_id: str, amount: int) -> int | None:
        row = await self._run("fetchrow", _REFUND, key_id, amount, idempotent=False)
        return None if row is None else row["credit_balance"]

    async def create_key(
        self,
        owner: str,
        *,
        key_id: str | None = None,
        status: KeyStatus = "active",
        expires_at: datetime | None = None,
        rate_limit_per_minute: int | None = None,
        max_concurrent: int | None = None,
        credit_balance: int | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """Insert a new random key; returns (the key, shown once, and its record)."""
        raw = generate_api_key()
        record = ApiKeyRecord(
            key_id=key_id or "key_" + secrets.token_hex(8),
            key_hash=hash_key(raw),
            owner=owner,
            status=status,
            expires_at=expires_at,
            rate_limit_per_minute=rate_limit_per_minute,
            max_concurrent=max_concurrent,
            credit_balance=credit_balance,
            created_at=utcnow(),
        )
        await self._run(
            "execute",
            f"INSERT INTO api_keys ({', '.join(RECORD_COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            *(getattr(record, c) for c in RECORD_COLUMNS),
        )
        logger.info("api key created", extra={"key_id": record.key_id})
        return raw, record

    async def set_status(self, key_id: str, status: KeyStatus) -> bool:
        result = await self._run(
            "execute", "UPDATE api_keys SET status = $2, updated_at = now() WHERE key_id = $1", key_id, status
        )
        logger.info("api key status changed", extra={"key_id": key_id, "key_status": status})
        return result.endswith(" 1")

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


# --- Supabase -----------------------------------------------------------------------------------


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


class SupabaseKeyStore(KeyStore):
    """Table `api_keys` through PostgREST RPC calls to the SQL functions in deploy/sql/003_key_functions.sql."""

    name = "supabase"

    def __init__(self, url: str | None = None, key: str | None = None, *, client: Any = None) -> None:
        if client is None:
            if not url or not key:
                raise ValueError("SupabaseKeyStore needs supabase_url and supabase_key")
            client = make_supabase_client(url, key)
        self._client = client

    async def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:
            # The error may echo request data; report only its class and PostgREST code.
            code = getattr(exc, "code", None)
            raise KeyStoreUnavailable(
                f"supabase key store: {exc.__class__.__name__} {code or ''}".strip()
            ) from None

    async def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        # An RPC POST keeps the hash in the body, out of URLs and access logs (a GET filter would not).
        rows = await self._rpc_rows("tts_lookup_api_key", {"p_key_hash": key_hash})
        return ApiKeyRecord.from_mapping(rows[0]) if rows else None

    async def _rpc_rows(self, fn: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        response = await self._call(lambda: self._client.rpc(fn, params).execute())
        data = response.data
        if isinstance(data, dict):
            return [data]
        return list(data or [])

    async def debit_credits(self, key_id: str, amount: int) -> DebitResult:
        rows = await self._rpc_rows("tts_debit_credits", {"p_key_id": key_id, "p_amount": amount})
        return DebitResult(True, rows[0].get("credit_balance")) if rows else DebitResult(False, None)

    async def refund_credits(self, key_id: str, amount: int) -> int | None:
        rows = await self._rpc_rows("tts_refund_credits", {"p_key_id": key_id, "p_amount": amount})
        return rows[0].get("credit_balance") if rows else None


# --- authenticator ------------------------------------------------------------------------------


@dataclass
class _CacheEntry:
    record: ApiKeyRecord | None
    fetched_at: float


class Authenticator:
    """Checks a presented key against a store, with an LRU cache of positive and negative answers.

    - `ttl_s`: how long a found record is trusted (revocation takes effect within this time).
    - `negative_ttl_s`: how long "no such key" is remembered (default min(ttl_s, 5 s), so a new key works
      quickly while a flood of random keys still cannot hammer the store).
    - `stale_if_error_s`: when the store fails, an entry up to this much past its TTL is still used.
    Expiry (`expires_at`) is checked on every call, so it is exact even for cached records.
    """

    def __init__(
        self,
        store: KeyStore,
        ttl_s: float = 30.0,
        *,
        negative_ttl_s: float | None = None,
        stale_if_error_s: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.negative_ttl_s = min(ttl_s, 5.0) if negative_ttl_s is None else negative_ttl_s
        self.stale_if_error_s = stale_if_error_s
        self.max_entries = max_entries
        self._clock = clock
        self._now = now
        self._cache: OrderedDict[str, _CacheEntry] = OrderedDict()  # found keys only
        # Unknown keys apart: a flood of random keys can never evict the valid keys' entries.
        self._negative: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[ApiKeyRecord | None]] = {}
        self.store_lookups = 0  # observable in tests: how often the store was asked

    @staticmethod
    def extract_key(headers: Mapping[str, str]) -> str | None:
        """The key from `Authorization: Bearer <key>` or else `X-API-Key`; None when absent or blank."""
        lowered = {k.lower(): v for k, v in headers.items()}
        auth = (lowered.get("authorization") or "").strip()
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        api_key = (lowered.get("x-api-key") or "").strip()
        return api_key or None

    def invalidate(self, raw_key: str | None = None) -> None:
        """Forget one key (or everything), e.g. right after an operator revokes it in this process."""
        if raw_key is None:
            self._cache.clear()
            self._negative.clear()
        else:
            self._cache.pop(hash_key(raw_key), None)
            self._negative.pop(hash_key(raw_key), None)

    def _fresh(self, entry: _CacheEntry) -> bool:
        ttl = self.ttl_s if entry.record is not None else self.negative_ttl_s
        return self._clock() - entry.fetched_at < ttl

    def _remember(self, key_hash: str, record: ApiKeyRecord | None) -> None:
        cache, other = (self._cache, self._negative) if record is not None else (self._negative, self._cache)
        other.pop(key_hash, None)
        cache[key_hash] = _CacheEntry(record, self._clock())
        cache.move_to_end(key_hash)
        while len(cache) > self.max_entries:
            cache.popitem(last=False)

    async def _fetch(self, key_hash: str) -> ApiKeyRecord | None:
        self.store_lookups += 1
        record = await self.store.get_by_hash(key_hash)
        self._remember(key_hash, record)
        return record

    def _lookup_done(self, key_hash: str, task: asyncio.Task[ApiKeyRecord | None]) -> None:
        self._inflight.pop(key_hash, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, so a waiter that went away leaves no "never retrieved" warning

    async def _lookup(self, key_hash: str) -> ApiKeyRecord | None:
        entry = self._cache.get(key_hash) or self._negative.get(key_hash)
        if entry is not None and self._fresh(entry):
            (self._cache if entry.record is not None else self._negative).move_to_end(key_hash)
            return entry.record
        # One store query per key at a time, however many requests arrive together.
        task = self._inflight.get(key_hash)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key_hash))
            self._inflight[key_hash] = task
            task.add_done_callback(lambda t: self._lookup_done(key_hash, t))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stale_limit = (
                self.ttl_s if entry and entry.record else self.negative_ttl_s
            ) + self.stale_if_error_s
            if entry is not None and self._clock() - entry.fetched_at < stale_limit:
                logger.warning(
                    "key store unavailable; using cached answer",
                    extra={
                        "key_id": entry.record.key_id if entry.record else None,
                        "error_class": type(exc).__name__,
                    },
                )
                return entry.record
            logger.error(
                "key store unavailable", extra={"error_class": type(exc).__name__, "store": self.store.name}
            )
            raise AuthError(
                "SERVICE_UNAVAILABLE", 503, "The API-key store is unavailable; retry in a few seconds."
            ) from None

    async def authenticate(self, raw_key: str | None) -> ApiKeyRecord:
        """The active, unexpired record for `raw_key`, or AuthError (see the module doc for codes)."""
        if not raw_key:
            raise AuthError(
                "INVALID_API_KEY",
                401,
                "No API key: send 'Authorization: Bearer <key>' or an 'X-API-Key' header.",
            )
        if len(raw_key) > MAX_KEY_CHARS:
            raise AuthError("INVALID_API_KEY", 401, "The API key is not valid.")
        record = await self._lookup(hash_key(raw_key))
        if record is None:
            logger.info("auth refused", extra={"reason": "unknown_key"})
            raise AuthError("INVALID_API_KEY", 401, "The API key is not valid.")
        if record.status == "revoked":
            logger.info("auth refused", extra={"reason": "revoked", "key_id": record.key_id})
            raise AuthError("INVALID_API_KEY", 401, "The API key has been revoked; use a current key.")
        if record.status == "suspended":
            logger.info("auth refused", extra={"reason": "suspended", "key_id": record.key_id})
            raise AuthError("KEY_SUSPENDED", 403, "The API key is suspended; contact the service owner.")
        if record.is_expired(self._now()):
            logger.info("auth refused", extra={"reason": "expired", "key_id": record.key_id})
            raise AuthError("EXPIRED_API_KEY", 401, "The API key has expired; use a current key.")
        return record


def build_key_store(settings: Settings) -> KeyStore:
    """The store named by `settings.key_backend`."""
    if settings.key_backend == "postgres":
        if not settings.database_url:
            raise ValueError("TTS_KEY_BACKEND=postgres needs TTS_DATABASE_URL")
        return PostgresKeyStore(settings.database_url)
    if settings.key_backend == "supabase":
        if not settings.supabase_url or not settings.supabase_key:
            raise ValueError("TTS_KEY_BACKEND=supabase needs TTS_SUPABASE_URL and TTS_SUPABASE_KEY")
        return SupabaseKeyStore(settings.supabase_url, settings.supabase_key)
    return StaticKeyStore.from_settings(settings)


def build_authenticator(settings: Settings, store: KeyStore | None = None) -> Authenticator:
    return Authenticator(store or build_key_store(settings), ttl_s=settings.key_cache_ttl_s,
                         stale_if_error_s=settings.key_stale_if_error_s)


class FailedAuthThrottle:
    """Per client address: after `limit` failed authentications within a minute, refuse further attempts from
    that address without asking the key store, until the window has room again. In-process and bounded."""

    def __init__(self, limit: int, window_s: float = 60.0, max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, address: str) -> list[float]:
        now = self._clock()
        times = [t for t in self._failures.get(address, []) if now - t < self.window_s]
        if times:
            self._failures[address] = times
        else:
            self._failures.pop(address, None)
        return times

    def retry_after(self, address: str) -> int | None:
        """Seconds to wait when `address` is throttled, else None."""
        times = self._recent(address)
        if self.limit and len(times) >= self.limit:
            return max(1, int(self.window_s - (self._clock() - times[0])) + 1)
        return None

    def failed(self, address: str) -> None:
        self._failures.setdefault(address, []).append(self._clock())
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
