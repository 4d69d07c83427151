"""Where key records live: a static list (settings or file), PostgreSQL (`api_keys`) or Supabase.

Longer than 500 lines because each of the three stores keeps its whole contract here side by side: lookups, the
credit journal, and administration (services/access/key_admin.py) over the same table or file.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from services.database import PostgresPool, make_supabase_client
from services.keys.records import (
    RECORD_COLUMNS,
    ApiKeyRecord,
    DebitResult,
    KeyConfigError,
    KeyStatus,
    KeyStoreUnavailable,
    derive_key_id,
    generate_api_key,
    hash_key,
    utcnow,
)
from shared.settings import Settings

logger = logging.getLogger("services.access")
# What administration may change on a key (never its id or hash).
ADMIN_COLUMNS = frozenset(
    {"owner", "status", "expires_at", "rate_limit_per_minute", "max_concurrent", "credit_balance"}
)
SETTLED_KEPT = 10_000  # the in-memory journal remembers this many settled request ids
LIST_PAGE = 1000  # keys asked for per PostgREST request when listing (Supabase's default "Max rows")


@dataclass(frozen=True)
class Reserved:
    """A reservation's outcome: held (debited and journaled), short (the balance does not cover it), settled (its
    request's row is stored: nothing more may be held for it) or unknown_key."""

    status: str
    balance: int | None


@dataclass(frozen=True)
class Settled:
    charged: (
        int  # what the request was actually charged (clamped to what its reservations and outage spend took)
    )
    refunded: int  # what its reservations took beyond that, given back


class KeyStore(ABC):
    """Where key records live. Lookups are by hash; credit moves are atomic in the store."""

    name: str = "base"

    @abstractmethod
    async def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    async def known_key_hashes(self) -> frozenset[str] | None:
        """Every hash that names a key (active, suspended or expired; not revoked), or None when the store cannot
        list them cheaply. Lets the failed-auth throttle tell a real key from a guess without a lookup."""
        return None

    @abstractmethod
    async def debit_credits(self, key_id: str, amount: int) -> DebitResult:
        """Take `amount` only when the balance covers it (unlimited keys always succeed)."""

    @abstractmethod
    async def refund_credits(self, key_id: str, amount: int) -> int | None:
        """Give `amount` back; returns the new balance (None: unlimited or unknown key)."""

    # --- the reservation journal (docs/api/credits.md). A store without a journal of its own (static, in memory) keeps
    # it here over debit_credits/refund_credits; PostgreSQL and Supabase keep it in `credit_reservations`
    # (deploy/sql/010_credit_reservations.sql), in the transaction of each move.

    async def reserve_credits(
        self, reservation_id: str, request_id: str, key_id: str, amount: int
    ) -> Reserved:
        """Take `amount` for `request_id` under `reservation_id`; idempotent per reservation id."""
        journal = self._journal()
        if reservation_id in journal:
            return Reserved("held", None)
        if request_id in self._settled_requests():
            return Reserved("settled", None)
        result = await self.debit_credits(key_id, amount)
        if not result.ok:
            return Reserved("short", result.balance)
        journal[reservation_id] = (request_id, key_id, amount)
        return Reserved("held", result.balance)

    async def release_credits(self, reservation_id: str) -> int:
        """Give a reservation back (its request never started); idempotent. Returns the credits given back."""
        entry = self._journal().pop(reservation_id, None)
        if entry is None:
            return 0
        try:
            await self.refund_credits(entry[1], entry[2])
        except BaseException:
            self._journal()[reservation_id] = entry
            raise
        return entry[2]

    async def settle_credits(self, request_id: str, key_id: str, charged: int, outage: int) -> Settled:
        """Settle what `request_id`'s reservations took against `charged` (tts_settle_credits' rule)."""
        journal = self._journal()
        taken = {rid: e for rid, e in journal.items() if e[0] == request_id}
        debited = sum(e[2] for e in taken.values())
        keep = min(max(charged, 0), debited)
        owed = max(0, min(charged, debited + max(outage, 0)) - keep)
        take = 0
        if debited - keep:
            await self.refund_credits(key_id, debited - keep)
        for rid in taken:
            journal.pop(rid, None)
        settled = self._settled_requests()
        settled[request_id] = None
        if (
            len(settled) > SETTLED_KEPT
        ):  # bounded: a late debit is refused by the gate too (services/access/gate.py)
            del settled[next(iter(settled))]
        if owed:  # the outage spend: taken down to zero at most
            result = await self.debit_credits(key_id, owed)
            if result.ok:
                take = owed
            elif result.balance:
                part = min(owed, result.balance)
                take = part if (await self.debit_credits(key_id, part)).ok else 0
        return Settled(keep + take, debited - keep)

    def _journal(self) -> dict[str, tuple[str, str, int]]:
        if not hasattr(self, "_reservations"):
            self._reservations: dict[str, tuple[str, str, int]] = {}
        return self._reservations

    def _settled_requests(self) -> dict[str, None]:
        """Request ids settled most recently (insertion-ordered), for refusing a debit that arrives after them."""
        if not hasattr(self, "_settled"):
            self._settled: dict[str, None] = {}
        return self._settled

    # --- administration (services/keys/admin.py): create, list, change and top up keys. The static store keeps its
    # changes in memory (and in its key file, when it has one); the database stores in `api_keys`.

    @abstractmethod
    async def insert_key(self, record: ApiKeyRecord) -> None: ...

    @abstractmethod
    async def list_keys(self) -> list[ApiKeyRecord]: ...

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        return next((r for r in await self.list_keys() if r.key_id == key_id), None)

    @abstractmethod
    async def update_key(self, key_id: str, changes: Mapping[str, Any]) -> ApiKeyRecord | None:
        """Set the columns in `changes` (ADMIN_COLUMNS); None when no key has that id."""

    async def top_up(self, key_id: str, amount: int) -> int | None:
        """Add `amount` credits to a key with a balance; returns the new balance (None: unlimited or unknown)."""
        return await self.refund_credits(key_id, amount)

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


# --- static -------------------------------------------------------------------------------------


class StaticKeyStore(KeyStore):
    """Keys from settings (plain keys, hashed at load) and/or a JSON file of hashed records. In memory."""

    name = "static"

    def __init__(self, records: Iterable[ApiKeyRecord] = ()) -> None:
        self.path: Path | None = (
            None  # the key file, when the records came from one (administration writes it)
        )
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

    async def insert_key(self, record: ApiKeyRecord) -> None:
        if record.key_id in self._hash_by_id:
            raise ValueError(f"duplicate key_id {record.key_id}")
        self.add(record)
        self._save()

    async def list_keys(self) -> list[ApiKeyRecord]:
        return list(self._by_hash.values())

    async def update_key(self, key_id: str, changes: Mapping[str, Any]) -> ApiKeyRecord | None:
        key_hash = self._hash_by_id.get(key_id)
        if key_hash is None:
            return None
        self._by_hash[key_hash] = replace(self._by_hash[key_hash], **changes)
        self._save()
        return self._by_hash[key_hash]

    async def top_up(self, key_id: str, amount: int) -> int | None:
        balance = await self.refund_credits(key_id, amount)
        self._save()
        return balance

    def _save(self) -> None:
        """Write the records back to the key file this store was read from (hashes only, atomically)."""
        if self.path is None:
            return
        rows = [{c: _json_value(getattr(r, c)) for c in RECORD_COLUMNS} for r in self._by_hash.values()]
        part = self.path.with_name(self.path.name + ".part")
        part.write_text(json.dumps({"keys": rows}, indent=2) + "\n", encoding="utf-8")
        part.replace(self.path)

    @classmethod
    def from_plain_keys(cls, keys: Iterable[str], owner: str = "static") -> StaticKeyStore:
        store = cls()
        for raw in keys:
            if raw.strip():
                store.add_plain_key(raw.strip(), owner=owner)
        return store

    @classmethod
    def from_file(cls, path: Path) -> StaticKeyStore:
        """JSON: a list of records, or {"keys": [...]}; each needs key_id and key_hash (sha256 hex). Raises
        KeyConfigError saying what is wrong (unreadable, not JSON, an entry malformed): a file the key checks
        cannot use would answer every request 401."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyConfigError(f"TTS_API_KEYS_FILE={path} cannot be read: {exc}") from None
        except json.JSONDecodeError as exc:
            raise KeyConfigError(f"TTS_API_KEYS_FILE={path} is not JSON: {exc}") from None
        entries = data.get("keys", []) if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise KeyConfigError(
                f"TTS_API_KEYS_FILE={path}: expected a list of key records or {{'keys': [...]}}"
            )
        store = cls()
        for number, entry in enumerate(entries, 1):
            try:
                if not isinstance(entry, Mapping):
                    raise ValueError("expected an object")
                record = ApiKeyRecord.from_mapping(entry)
                store.add(record)
            except (KeyError, TypeError, ValueError) as exc:
                reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
                raise KeyConfigError(f"TTS_API_KEYS_FILE={path}: key record {number}: {reason}") from None
        store.path = Path(path)
        return store

    @classmethod
    def from_settings(cls, settings: Settings) -> StaticKeyStore:
        store = cls.from_file(settings.access.api_keys_file) if settings.access.api_keys_file else cls()
        for raw in settings.access.api_keys.split(","):
            if raw.strip():
                try:
                    store.add_plain_key(raw.strip(), owner="static")
                except ValueError:  # two different keys whose derived ids collide: one would shadow the other
                    raise KeyConfigError(
                        "TTS_API_KEYS: two keys share a key id (a key listed in the key file as well?); "
                        "list each key once"
                    ) from None
        return store

    def __len__(self) -> int:
        return len(self._by_hash)

    async def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        return self._by_hash.get(key_hash)

    async def known_key_hashes(self) -> frozenset[str] | None:
        return frozenset(h for h, r in self._by_hash.items() if r.status != "revoked")

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
# Past this many keys the list is not worth holding in memory: the throttle falls back to address alone.
MAX_KNOWN_KEYS = 100_000
_SELECT_KNOWN = f"SELECT key_hash FROM api_keys WHERE status <> 'revoked' LIMIT {MAX_KNOWN_KEYS + 1}"
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

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: PostgresPool | None = None,
        max_connections: int = 4,
        timeout_s: float = 5.0,
    ) -> None:
        """`pool`: the process's shared pool (services/database.py), closed by its owner; else one of its own."""
        if pool is None and not dsn:
            raise ValueError("PostgresKeyStore needs a DSN or a pool")
        self._owns_pool = pool is None
        self._pool = pool or PostgresPool(
            str(dsn), max_connections=max_connections, timeout_s=timeout_s, command_timeout_s=timeout_s
        )

    async def _get_pool(self) -> Any:
        return await self._pool.get()

    async def _run(self, method: str, query: str, *args: Any, idempotent: bool = True) -> Any:
        """Run one statement. A dead pooled connection (the server restarted) gets one retry on a fresh one.

        A statement that must not run twice is not retried itself: the connection is probed first and only the probe
        is retried, so a reply lost in flight cannot double-charge. Credit moves go through the journaled functions
        (tts_reserve_credits & co.), which are idempotent and so retried like reads. Whatever asyncpg raises for a
        connection in a bad state (InternalClientError "cannot switch to state" after a restart included) becomes
        KeyStoreUnavailable: the outcome is unknown, and the caller resolves it by asking the journal again.
        """
        import asyncpg

        retryable = (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # the protocol's state machine after a connection broke mid-statement
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

    async def reserve_credits(
        self, reservation_id: str, request_id: str, key_id: str, amount: int
    ) -> Reserved:
        row = await self._run(
            "fetchrow",
            "SELECT o_status, o_balance FROM tts_reserve_credits($1, $2, $3, $4)",
            reservation_id,
            request_id,
            key_id,
            amount,
        )
        return Reserved(row["o_status"], row["o_balance"])

    async def release_credits(self, reservation_id: str) -> int:
        return int(await self._run("fetchval", "SELECT tts_release_credits($1)", reservation_id) or 0)

    async def settle_credits(self, request_id: str, key_id: str, charged: int, outage: int) -> Settled:
        row = await self._run(
            "fetchrow",
            "SELECT o_charged, o_refund FROM tts_settle_credits($1, $2, $3, $4)",
            request_id,
            key_id,
            charged,
            outage,
            idempotent=False,
        )
        return Settled(int(row["o_charged"]), int(row["o_refund"]))

    async def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self._run("fetchrow", _SELECT_BY_HASH, key_hash)
        return None if row is None else ApiKeyRecord.from_mapping(dict(row))

    async def known_key_hashes(self) -> frozenset[str] | None:
        rows = await self._run("fetch", _SELECT_KNOWN)
        return None if len(rows) > MAX_KNOWN_KEYS else frozenset(r["key_hash"] for r in rows)

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
        await self.insert_key(record)
        logger.info("api key created", extra={"key_id": record.key_id})
        return raw, record

    async def insert_key(self, record: ApiKeyRecord) -> None:
        await self._run(
            "execute",
            f"INSERT INTO api_keys ({', '.join(RECORD_COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            *(getattr(record, c) for c in RECORD_COLUMNS),
            idempotent=False,
        )

    async def list_keys(self) -> list[ApiKeyRecord]:
        rows = await self._run(
            "fetch", f"SELECT {', '.join(RECORD_COLUMNS)} FROM api_keys ORDER BY created_at"
        )
        return [ApiKeyRecord.from_mapping(dict(r)) for r in rows]

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self._run(
            "fetchrow", f"SELECT {', '.join(RECORD_COLUMNS)} FROM api_keys WHERE key_id = $1", key_id
        )
        return None if row is None else ApiKeyRecord.from_mapping(dict(row))

    async def update_key(self, key_id: str, changes: Mapping[str, Any]) -> ApiKeyRecord | None:
        columns = [c for c in changes if c in ADMIN_COLUMNS]  # names from a fixed list, never from a request
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
        row = await self._run(
            "fetchrow",
            f"UPDATE api_keys SET {sets}{', ' if sets else ''}updated_at = now() WHERE key_id = $1 "
            f"RETURNING {', '.join(RECORD_COLUMNS)}",
            key_id,
            *(changes[c] for c in columns),
        )
        return None if row is None else ApiKeyRecord.from_mapping(dict(row))

    async def set_status(self, key_id: str, status: KeyStatus) -> bool:
        result = await self._run(
            "execute", "UPDATE api_keys SET status = $2, updated_at = now() WHERE key_id = $1", key_id, status
        )
        logger.info("api key status changed", extra={"key_id": key_id, "key_status": status})
        return bool(result.endswith(" 1"))

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()


# --- Supabase -----------------------------------------------------------------------------------


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

    async def reserve_credits(
        self, reservation_id: str, request_id: str, key_id: str, amount: int
    ) -> Reserved:
        rows = await self._rpc_rows(
            "tts_reserve_credits",
            {
                "p_reservation_id": reservation_id,
                "p_request_id": request_id,
                "p_key_id": key_id,
                "p_amount": amount,
            },
        )
        return (
            Reserved(rows[0]["o_status"], rows[0].get("o_balance")) if rows else Reserved("unknown_key", None)
        )

    async def release_credits(self, reservation_id: str) -> int:
        response = await self._call(
            lambda: self._client.rpc("tts_release_credits", {"p_reservation_id": reservation_id}).execute()
        )
        return int(response.data or 0)

    async def settle_credits(self, request_id: str, key_id: str, charged: int, outage: int) -> Settled:
        rows = await self._rpc_rows(
            "tts_settle_credits",
            {"p_request_id": request_id, "p_key_id": key_id, "p_charged": charged, "p_outage": outage},
        )
        return Settled(int(rows[0]["o_charged"]), int(rows[0]["o_refund"])) if rows else Settled(0, 0)

    async def insert_key(self, record: ApiKeyRecord) -> None:
        row = {c: _json_value(getattr(record, c)) for c in RECORD_COLUMNS}
        await self._call(lambda: self._client.table("api_keys").insert(row).execute())

    async def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, page by page: PostgREST answers at most the project's "Max rows" (1,000 by default) whatever
        a request asks, so a short page does not mean the end; only an empty one does. Ordered by key id after
        creation time, so that pages neither skip nor repeat a key."""

        def page(start: int) -> Any:
            query = self._client.table("api_keys").select(",".join(RECORD_COLUMNS))
            return query.order("created_at").order("key_id").range(start, start + LIST_PAGE - 1).execute()

        records: list[ApiKeyRecord] = []
        while True:
            response = await self._call(functools.partial(page, len(records)))
            if not response.data:
                return records
            records.extend(ApiKeyRecord.from_mapping(r) for r in response.data)

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        response = await self._call(
            lambda: (
                self._client.table("api_keys").select(",".join(RECORD_COLUMNS)).eq("key_id", key_id).execute()
            )
        )
        return ApiKeyRecord.from_mapping(response.data[0]) if response.data else None

    async def update_key(self, key_id: str, changes: Mapping[str, Any]) -> ApiKeyRecord | None:
        row = {c: _json_value(v) for c, v in changes.items() if c in ADMIN_COLUMNS}
        row["updated_at"] = utcnow().isoformat()
        response = await self._call(
            lambda: self._client.table("api_keys").update(row).eq("key_id", key_id).execute()
        )
        return ApiKeyRecord.from_mapping(response.data[0]) if response.data else None


def _json_value(value: Any) -> Any:
    """A record field as JSON carries it (a key file, a PostgREST body): times in ISO 8601."""
    return value.isoformat() if isinstance(value, datetime) else value
