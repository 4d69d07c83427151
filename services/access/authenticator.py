"""The authenticator: a presented key checked against a store, with a TTL cache; and the failed-auth throttle.

A key is only ever stored as the SHA-256 hex digest of its UTF-8 bytes. Logs name a key by its `key_id`,
never by the key or its hash.

Outcomes (code, HTTP status):
  - no key in the request, unknown key, revoked key  -> INVALID_API_KEY 401 (revocation is permanent, so
    a revoked key is answered like one that never existed; the message says which)
  - key past its `expires_at`                         -> EXPIRED_API_KEY 401
  - suspended key (known, temporarily not allowed)    -> KEY_SUSPENDED 403
  - the key store cannot be reached and nothing is cached for the key -> SERVICE_UNAVAILABLE 503

Credits: 1 credit = 1 character of request text (see services/usage/credits.py). `credit_balance` None means
unlimited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.database import DatabaseClients
from services.errors import ServiceError
from services.keys.records import MAX_KEY_CHARS, ApiKeyRecord, AuthError, KeyConfigError, hash_key, utcnow
from services.keys.stores import KeyStore, PostgresKeyStore, StaticKeyStore, SupabaseKeyStore
from shared.settings import Settings

logger = logging.getLogger("services.access")
# How old the store's list of key hashes may be (a key created since waits this long to pass a throttled address).
KNOWN_KEYS_REFRESH_S = 30.0
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
        # The store's list of key hashes (KeyStore.known_key_hashes), refreshed in the background when older than
        # KNOWN_KEYS_REFRESH_S: lets a throttled address's real keys through without a lookup per guess.
        self._known: frozenset[str] | None = None
        self._known_at = float("-inf")
        self._known_task: asyncio.Task[None] | None = None

    @staticmethod
    def extract_key(headers: Mapping[str, str]) -> str | None:
        """The key from `Authorization: Bearer <key>`, else `X-API-Key`, else `xi-api-key` (the ElevenLabs
        dialect's header); None when absent or blank."""
        lowered = {k.lower(): v for k, v in headers.items()}
        auth = (lowered.get("authorization") or "").strip()
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        api_key = (lowered.get("x-api-key") or lowered.get("xi-api-key") or "").strip()
        return api_key or None

    def invalidate(self, raw_key: str | None = None) -> None:
        """Forget one key (or everything), e.g. right after an operator revokes it in this process."""
        if raw_key is None:
            self._cache.clear()
            self._negative.clear()
        else:
            self._cache.pop(hash_key(raw_key), None)
            self._negative.pop(hash_key(raw_key), None)

    def is_known(self, raw_key: str) -> bool:
        """Whether `raw_key` names a key in the store's list as of its last refresh (False where the store cannot
        list its keys, or before the first refresh ends). Never asks the store on the caller's path."""
        if self._known_task is None and self._clock() - self._known_at >= KNOWN_KEYS_REFRESH_S:
            self._known_task = asyncio.get_running_loop().create_task(self._refresh_known())
        return self._known is not None and hash_key(raw_key) in self._known

    async def _refresh_known(self) -> None:
        try:
            self._known = await self.store.known_key_hashes()
        except Exception as exc:  # the list is an optimisation: keep the last one
            logger.warning("could not list the key store's keys (%s)", type(exc).__name__)
        finally:
            self._known_at = self._clock()
            self._known_task = None

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


def build_key_store(settings: Settings, databases: DatabaseClients | None = None) -> KeyStore:
    """The store named by `settings.access.key_backend`, on the shared database clients when given."""
    if settings.access.key_backend == "postgres":
        if not settings.databases.database_url:
            raise KeyConfigError("TTS_KEY_BACKEND=postgres needs TTS_DATABASE_URL")
        return PostgresKeyStore(
            settings.databases.database_url, pool=databases.postgres if databases is not None else None
        )
    if settings.access.key_backend == "supabase":
        if not settings.databases.supabase_url or not settings.databases.supabase_key:
            raise KeyConfigError("TTS_KEY_BACKEND=supabase needs TTS_SUPABASE_URL and TTS_SUPABASE_KEY")
        return SupabaseKeyStore(
            settings.databases.supabase_url,
            settings.databases.supabase_key,
            client=databases.supabase if databases is not None else None,
        )
    return StaticKeyStore.from_settings(settings)


def build_authenticator(
    settings: Settings, store: KeyStore | None = None, databases: DatabaseClients | None = None
) -> Authenticator:
    return Authenticator(
        store or build_key_store(settings, databases),
        ttl_s=settings.access.key_cache_ttl_s,
        stale_if_error_s=settings.access.key_stale_if_error_s,
    )


class FailedAuthThrottle:
    """After `limit` failed authentications within a minute from one client address, or with one key, refuse
    further attempts from that address (or with that key) without checking them, until the window has room again.

    Throttled by the failing key material too, not only by address: a key that authenticated in this process within
    `good_ttl_s`, or that the key store lists (`known`, Authenticator.is_known), is never refused for others'
    failures at its address (behind a proxy or a NAT, one address is every user); a key that keeps failing is
    refused from any address. In-process and bounded."""

    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        good_ttl_s: float = 600.0,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.good_ttl_s = good_ttl_s
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._good: OrderedDict[str, float] = OrderedDict()  # hash of a key that authenticated -> when

    def _recent(self, address: str) -> list[float]:
        now = self._clock()
        times = [t for t in self._failures.get(address, []) if now - t < self.window_s]
        if times:
            self._failures[address] = times
        else:
            self._failures.pop(address, None)
        return times

    def _wait(self, entry: str) -> int | None:
        times = self._recent(entry)
        if self.limit and len(times) >= self.limit:
            return max(1, int(self.window_s - (self._clock() - times[0])) + 1)
        return None

    def retry_after(
        self, address: str, key: str | None = None, known: Callable[[str], bool] | None = None
    ) -> int | None:
        """Seconds to wait when `address` (or the presented `key`) is throttled, else None."""
        if key:
            material = hash_key(key)
            seen = self._good.get(material)
            if seen is not None and self._clock() - seen < self.good_ttl_s:
                return None  # a key in use is not locked out by failures of others at its address
            wait = self._wait("key:" + material)
            if wait is not None:
                return wait
        wait = self._wait(address)
        if wait is not None and key and known is not None and known(key):
            return None  # a real key, not yet used here: the guesses at its address are not its own
        return wait

    def refusal(
        self, address: str, key: str | None = None, known: Callable[[str], bool] | None = None
    ) -> ServiceError | None:
        """The 429 for `key` (None: no key) from `address` while `retry_after` holds it back, else None. Synchronous
        and without the key store: a handshake gate refuses with it before any other layer runs
        (api/socket_guard.py)."""
        wait = self.retry_after(address, key, known)
        if wait is None:
            return None
        return ServiceError(
            "RATE_LIMIT_EXCEEDED",
            f"Too many requests with invalid API keys from this address; retry in {wait} s.",
            retry_after=wait,
        )

    def failed(self, address: str, key: str | None = None) -> None:
        for entry in (address, *(("key:" + hash_key(key),) if key else ())):
            self._failures.setdefault(entry, []).append(self._clock())
            self._failures.move_to_end(entry)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        material = hash_key(key)
        self._good[material] = self._clock()
        self._good.move_to_end(material)
        while len(self._good) > self.max_addresses:
            self._good.popitem(last=False)
