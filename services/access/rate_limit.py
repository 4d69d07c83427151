"""Per-key request rate (sliding 60 s window) and concurrent-request limits.

Three limiters share one interface:
  - InProcessLimiter: this process only (local default; also the fallback).
  - RedisLimiter: one limit shared by every container. Each check is one Lua script, so it is atomic:
    a sorted set of request timestamps per key for the window, and a sorted set of leases (score =
    expiry) for concurrency. Leases are renewed while a stream runs and expire on their own when a
    container dies, so a crash never leaks a slot for longer than `lease_ttl_s`.
  - FallbackLimiter: Redis while it answers; per-container limits while it does not (the gauge
    RATE_LIMIT_BACKEND_UP says which), probing Redis in the background until it is back.

`check_rate` returns a RateDecision (the caller turns a refusal into 429 RATE_LIMIT_EXCEEDED with
`decision.headers()`); `acquire_stream` returns a StreamLease or raises TooManyConcurrentStreams
(429 TOO_MANY_CONCURRENT_REQUESTS). Refusals count in RATE_LIMITED{limit="rate"|"concurrency"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from shared.metrics import RATE_LIMIT_BACKEND_UP, RATE_LIMITED
from shared.settings import Settings

logger = logging.getLogger("services.access.rate_limit")

WINDOW_S = 60.0
# The concurrency cap gives no hint when a slot frees (streams end when they end); clients retry after this.
CONCURRENCY_RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class RateDecision:
    """One limit check. `reset_s`: seconds until the oldest counted request leaves the window."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        """X-RateLimit-* for every answer, plus Retry-After (whole seconds, at least 1) on a refusal."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(max(0, math.ceil(self.reset_s))),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


class LimitExceeded(Exception):
    code = "LIMIT_EXCEEDED"
    status = 429

    def __init__(self, decision: RateDecision, message: str) -> None:
        super().__init__(message)
        self.decision = decision
        self.message = message


class RateLimitExceeded(LimitExceeded):
    code = "RATE_LIMIT_EXCEEDED"


class TooManyConcurrentStreams(LimitExceeded):
    code = "TOO_MANY_CONCURRENT_REQUESTS"


def rate_refusal(decision: RateDecision) -> RateLimitExceeded:
    """The exception a caller raises for a refused `check_rate` decision."""
    return RateLimitExceeded(
        decision,
        f"Rate limit of {decision.limit} requests per minute exceeded; retry in "
        f"{max(1, math.ceil(decision.retry_after_s))} s.",
    )


def _concurrency_refusal(limit: int, active: int) -> TooManyConcurrentStreams:
    RATE_LIMITED.labels(limit="concurrency").inc()
    decision = RateDecision(False, limit, 0, CONCURRENCY_RETRY_AFTER_S, CONCURRENCY_RETRY_AFTER_S)
    return TooManyConcurrentStreams(
        decision, f"{active} requests already running for this key (limit {limit}); wait for one to finish."
    )


class StreamLease:
    """A held concurrency slot. `release()` is idempotent; also an async context manager."""

    def __init__(
        self,
        key_id: str,
        lease_id: str,
        limit: int,
        release_cb: Callable[[], Awaitable[None]],
        heartbeat: asyncio.Task[None] | None = None,
    ) -> None:
        self.key_id = key_id
        self.lease_id = lease_id
        self.limit = limit
        self._release_cb = release_cb
        self._heartbeat = heartbeat
        self.released = False

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        try:
            await self._release_cb()
        except Exception as exc:  # the lease TTL frees the slot anyway
            logger.warning(
                "lease release failed", extra={"key_id": self.key_id, "error_class": type(exc).__name__}
            )

    async def __aenter__(self) -> StreamLease:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.release()


class Limiter(Protocol):
    async def start(self) -> None: ...

    async def check_rate(self, key_id: str, limit: int) -> RateDecision: ...

    async def acquire_stream(self, key_id: str, max_concurrent: int) -> StreamLease: ...

    async def close(self) -> None: ...


# --- in-process ---------------------------------------------------------------------------------


class InProcessLimiter:
    """Sliding-window log and lease sets in memory. Exact within one process; `clock` is injectable."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._leases: dict[str, set[str]] = {}
        self._last_sweep = clock()

    def _prune(self, hits: deque[float], now: float) -> None:
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()

    def _sweep(self, now: float) -> None:
        # Keys that stopped calling would otherwise keep their deque forever.
        if now - self._last_sweep < self.window_s:
            return
        self._last_sweep = now
        for key in list(self._hits):
            self._prune(self._hits[key], now)
            if not self._hits[key]:
                del self._hits[key]

    async def check_rate(self, key_id: str, limit: int) -> RateDecision:
        now = self._clock()
        self._sweep(now)
        hits = self._hits.setdefault(key_id, deque())
        self._prune(hits, now)
        if len(hits) < limit:
            hits.append(now)
            return RateDecision(True, limit, limit - len(hits), hits[0] + self.window_s - now, 0.0)
        RATE_LIMITED.labels(limit="rate").inc()
        wait = hits[0] + self.window_s - now
        return RateDecision(False, limit, 0, wait, wait)

    async def acquire_stream(self, key_id: str, max_concurrent: int) -> StreamLease:
        held = self._leases.setdefault(key_id, set())
        if len(held) >= max_concurrent:
            raise _concurrency_refusal(max_concurrent, len(held))
        lease_id = uuid.uuid4().hex
        held.add(lease_id)

        async def release() -> None:
            leases = self._leases.get(key_id)
            if leases is not None:
                leases.discard(lease_id)
                if not leases:
                    del self._leases[key_id]

        return StreamLease(key_id, lease_id, max_concurrent, release)

    def active_streams(self, key_id: str) -> int:
        return len(self._leases.get(key_id, ()))

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


# --- Redis --------------------------------------------------------------------------------------

# Times come from the Redis server (TIME), so containers with skewed clocks agree. Needs Redis >= 5.
_RATE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
  allowed = 1
end
local reset = window
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {allowed, count, reset}
"""

# Lease set: member = lease id, score = expiry (ms). Expired leases (crashed holders) are dropped first.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[1]) then
  return {0, count}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, count + 1}
"""

# Renewing re-adds a lease that lapsed (e.g. Redis was briefly unreachable): the stream is still running.
_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""


class RedisLimiter:
    """Limits shared through one Redis. Errors (unreachable, timeouts) propagate; wrap in FallbackLimiter."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "tts:limits:",
        window_s: float = WINDOW_S,
        lease_ttl_s: float = 60.0,
        heartbeat_s: float | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.window_s = window_s
        self.lease_ttl_s = lease_ttl_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else lease_ttl_s / 3
        self._rate = client.register_script(_RATE_LUA)
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._renew = client.register_script(_RENEW_LUA)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.5, **kwargs: Any) -> RedisLimiter:
        """Short timeouts and one immediate retry: a slow Redis must not delay requests (the fallback takes over)."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        return cls(client, **kwargs)

    def _key(self, kind: str, key_id: str) -> str:
        return f"{self.prefix}{kind}:{key_id}"

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def start(self) -> None:
        pass

    async def check_rate(self, key_id: str, limit: int) -> RateDecision:
        window_ms = int(self.window_s * 1000)
        allowed, count, reset_ms = await self._rate(
            keys=[self._key("rate", key_id)], args=[window_ms, limit, uuid.uuid4().hex]
        )
        reset_s = max(0.0, int(reset_ms) / 1000)
        if int(allowed):
            return RateDecision(True, limit, max(0, limit - int(count)), reset_s, 0.0)
        RATE_LIMITED.labels(limit="rate").inc()
        return RateDecision(False, limit, 0, reset_s, reset_s)

    async def acquire_stream(self, key_id: str, max_concurrent: int) -> StreamLease:
        key = self._key("conc", key_id)
        lease_id = uuid.uuid4().hex
        ttl_ms = int(self.lease_ttl_s * 1000)
        ok, count = await self._acquire(keys=[key], args=[max_concurrent, ttl_ms, lease_id])
        if not int(ok):
            raise _concurrency_refusal(max_concurrent, int(count))

        async def release() -> None:
            await self.client.zrem(key, lease_id)

        heartbeat = asyncio.ensure_future(self._keep_alive(key, lease_id, ttl_ms, key_id))
        return StreamLease(key_id, lease_id, max_concurrent, release, heartbeat)

    async def _keep_alive(self, key: str, lease_id: str, ttl_ms: int, key_id: str) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._renew(keys=[key], args=[ttl_ms, lease_id])
            except Exception as exc:  # keep trying; the slot lapses only if Redis stays away past the TTL
                logger.debug(
                    "lease renew failed", extra={"key_id": key_id, "error_class": type(exc).__name__}
                )

    async def active_streams(self, key_id: str) -> int:
        key = self._key("conc", key_id)
        now_ms = int((await self.client.time())[0]) * 1000
        return int(await self.client.zcount(key, now_ms, "+inf"))

    async def close(self) -> None:
        await self.client.aclose()


# --- fallback -----------------------------------------------------------------------------------


def _backend_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


class FallbackLimiter:
    """Use `primary` (Redis); when it errors, answer from `fallback` (per container) and probe in the background.

    While Redis is down each container enforces the full per-key limit on its own, so across N containers
    a key can get up to N times its limit; the gauge RATE_LIMIT_BACKEND_UP reads 0 meanwhile.
    """

    def __init__(
        self,
        primary: RedisLimiter,
        fallback: InProcessLimiter | None = None,
        *,
        retry_interval_s: float = 5.0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback or InProcessLimiter(window_s=primary.window_s)
        self.retry_interval_s = retry_interval_s
        self._errors = _backend_errors()
        self._up = True
        self._probe: asyncio.Task[None] | None = None
        # Releases Redis could not take (outage): retried as soon as it answers again, so a key is not blocked
        # for the rest of the lease TTL by slots nobody holds.
        self.pending_releases: list[Callable[[], Awaitable[None]]] = []
        RATE_LIMIT_BACKEND_UP.set(1)

    @property
    def shared_backend_up(self) -> bool:
        return self._up

    def _mark_down(self, exc: BaseException) -> None:
        if self._up:
            logger.warning(
                "rate-limit backend unreachable; using per-container limits",
                extra={"error_class": type(exc).__name__},
            )
        self._up = False
        RATE_LIMIT_BACKEND_UP.set(0)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while not self._up:
            await asyncio.sleep(self.retry_interval_s)
            try:
                await self.primary.ping()
            except self._errors:
                continue
            self._up = True
            RATE_LIMIT_BACKEND_UP.set(1)
            logger.info("rate-limit backend reachable again; shared limits restored")
            await self._retry_releases()

    async def _retry_releases(self) -> None:
        pending, self.pending_releases = self.pending_releases, []
        for release in pending:
            try:
                await release()
            except self._errors as exc:
                self.pending_releases.append(release)
                self._mark_down(exc)

    async def start(self) -> None:
        """Probe Redis once so the gauge is right before the first request."""
        try:
            await self.primary.ping()
        except self._errors as exc:
            self._mark_down(exc)

    async def check_rate(self, key_id: str, limit: int) -> RateDecision:
        if self._up:
            try:
                return await self.primary.check_rate(key_id, limit)
            except self._errors as exc:
                self._mark_down(exc)
        return await self.fallback.check_rate(key_id, limit)

    async def acquire_stream(self, key_id: str, max_concurrent: int) -> StreamLease:
        if self._up:
            try:
                lease = await self.primary.acquire_stream(key_id, max_concurrent)
            except self._errors as exc:
                self._mark_down(exc)
            else:
                redis_release = lease._release_cb

                async def release() -> None:
                    try:
                        await redis_release()
                    except self._errors as exc:
                        self.pending_releases.append(redis_release)
                        self._mark_down(exc)
                        raise

                lease._release_cb = release
                return lease
        return await self.fallback.acquire_stream(key_id, max_concurrent)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self.primary.close()


def build_limiter(settings: Settings) -> Limiter:
    """Redis with per-container fallback when `redis_url` is set, else in-process (gauge 0)."""
    if settings.databases.redis_url:
        return FallbackLimiter(RedisLimiter.from_url(settings.databases.redis_url))
    RATE_LIMIT_BACKEND_UP.set(0)
    return InProcessLimiter()
