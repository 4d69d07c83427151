"""In-process sliding window and concurrency leases (fake clock), headers, and the Redis fallback switch."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.access.rate_limit import (
    FallbackLimiter,
    InProcessLimiter,
    RateDecision,
    StreamLease,
    TooManyConcurrentStreams,
    rate_refusal,
)
from shared.metrics import REGISTRY


class FakeClock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


def rejections(kind: str) -> float:
    return REGISTRY.get_sample_value("veena3_tts_rate_limit_rejections_total", {"limit": kind}) or 0.0


def backend_up() -> float | None:
    return REGISTRY.get_sample_value("veena3_tts_rate_limit_shared_backend_up")


async def test_window_allows_limit_then_refuses_until_oldest_request_ages_out() -> None:
    clock = FakeClock()
    limiter = InProcessLimiter(window_s=60.0, clock=clock)
    before = rejections("rate")
    remaining = []
    for offset in (0.0, 10.0, 20.0):
        clock.t = 500.0 + offset
        decision = await limiter.check_rate("k", 3)
        assert decision.allowed
        remaining.append(decision.remaining)
    assert remaining == [2, 1, 0]

    clock.t = 530.0
    refused = await limiter.check_rate("k", 3)
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after_s == pytest.approx(30.0)  # the request at t=500 leaves the window at 560
    assert rejections("rate") == before + 1

    clock.t = 560.001  # sliding: exactly one slot came back, not a whole new window
    assert (await limiter.check_rate("k", 3)).allowed
    assert not (await limiter.check_rate("k", 3)).allowed
    clock.t = 570.001
    assert (await limiter.check_rate("k", 3)).allowed


async def test_refused_requests_do_not_extend_the_wait() -> None:
    clock = FakeClock()
    limiter = InProcessLimiter(clock=clock)
    await limiter.check_rate("k", 1)
    for step in range(10):
        clock.t += 5
        assert not (await limiter.check_rate("k", 1)).allowed, step
    clock.t = 560.0
    assert (await limiter.check_rate("k", 1)).allowed


async def test_keys_are_limited_independently() -> None:
    limiter = InProcessLimiter(clock=FakeClock())
    for _ in range(2):
        assert (await limiter.check_rate("a", 2)).allowed
    assert not (await limiter.check_rate("a", 2)).allowed
    assert (await limiter.check_rate("b", 2)).allowed


def test_decision_headers() -> None:
    ok = RateDecision(True, 60, 59, 59.2, 0.0).headers()
    assert ok == {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Reset": "60"}
    refused = RateDecision(False, 60, 0, 0.2, 0.2)
    headers = refused.headers()
    assert headers["Retry-After"] == "1" and headers["X-RateLimit-Remaining"] == "0"
    err = rate_refusal(RateDecision(False, 60, 0, 12.5, 12.5))
    assert (err.code, err.status) == ("RATE_LIMIT_EXCEEDED", 429) and "13 s" in err.message


async def test_idle_keys_are_forgotten() -> None:
    clock = FakeClock()
    limiter = InProcessLimiter(clock=clock)
    for i in range(100):
        await limiter.check_rate(f"key-{i}", 5)
    clock.t += 61
    await limiter.check_rate("fresh", 5)
    assert set(limiter._hits) == {"fresh"}


async def test_concurrency_cap_and_idempotent_release() -> None:
    limiter = InProcessLimiter()
    before = rejections("concurrency")
    first = await limiter.acquire_stream("k", 2)
    second = await limiter.acquire_stream("k", 2)
    with pytest.raises(TooManyConcurrentStreams) as info:
        await limiter.acquire_stream("k", 2)
    assert (info.value.code, info.value.status) == ("TOO_MANY_CONCURRENT_REQUESTS", 429)
    assert info.value.decision.headers()["Retry-After"] == "1"
    assert rejections("concurrency") == before + 1
    assert (await limiter.acquire_stream("other", 2)).key_id == "other"

    await first.release()
    await first.release()  # a second release must not free another slot
    third = await limiter.acquire_stream("k", 2)
    with pytest.raises(TooManyConcurrentStreams):
        await limiter.acquire_stream("k", 2)
    assert limiter.active_streams("k") == 2
    await second.release()
    await third.release()
    assert limiter.active_streams("k") == 0


async def test_lease_context_manager_releases_on_error() -> None:
    limiter = InProcessLimiter()
    with pytest.raises(RuntimeError):
        async with await limiter.acquire_stream("k", 1):
            raise RuntimeError("generation failed")
    lease = await limiter.acquire_stream("k", 1)
    assert isinstance(lease, StreamLease)


class FakeRedisLimiter:
    """Stands in for RedisLimiter: answers, or fails like an unreachable server."""

    window_s = 60.0

    def __init__(self) -> None:
        self.down = True
        self.inner = InProcessLimiter()
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("Connection refused")

    async def check_rate(self, key_id: str, limit: int) -> RateDecision:
        self._check()
        return await self.inner.check_rate(key_id, limit)

    async def acquire_stream(self, key_id: str, max_concurrent: int) -> StreamLease:
        self._check()
        return await self.inner.acquire_stream(key_id, max_concurrent)

    async def ping(self) -> bool:
        self._check()
        return True

    async def close(self) -> None:
        pass


async def test_fallback_uses_local_limits_while_redis_is_down_and_recovers() -> None:
    primary = FakeRedisLimiter()
    limiter = FallbackLimiter(primary, retry_interval_s=0.02)
    try:
        decisions = [await limiter.check_rate("k", 2) for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]  # per-container limit still applies
        assert backend_up() == 0 and not limiter.shared_backend_up
        calls_while_down = primary.calls
        lease = await limiter.acquire_stream("k", 1)
        assert primary.calls == calls_while_down  # requests do not wait on a dead Redis; a probe retries
        await lease.release()

        primary.down = False
        for _ in range(100):
            if limiter.shared_backend_up:
                break
            await asyncio.sleep(0.01)
        assert backend_up() == 1
        assert (await limiter.check_rate("k", 2)).allowed  # answered by the shared backend again
        assert primary.inner._hits["k"]
    finally:
        await limiter.close()


async def test_concurrency_refusal_from_redis_is_not_an_outage() -> None:
    primary = FakeRedisLimiter()
    primary.down = False
    limiter = FallbackLimiter(primary, retry_interval_s=10)
    lease = await limiter.acquire_stream("k", 1)
    with pytest.raises(TooManyConcurrentStreams):
        await limiter.acquire_stream("k", 1)
    assert limiter.shared_backend_up and backend_up() == 1
    await lease.release()
    await limiter.close()
