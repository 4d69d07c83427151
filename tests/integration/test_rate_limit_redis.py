"""Rate and concurrency limits shared through a real Redis, and the per-container fallback."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from services.access.rate_limit import FallbackLimiter, RedisLimiter, TooManyConcurrentStreams
from shared.metrics import REGISTRY

pytestmark = pytest.mark.integration


def backend_up() -> float | None:
    return REGISTRY.get_sample_value("veena3_tts_rate_limit_shared_backend_up")


@pytest.fixture
async def two_containers(redis_url: str, unique: str):
    """Two limiters with their own connections to one Redis, like two service containers."""
    limiters = [RedisLimiter.from_url(redis_url, prefix=f"test:{unique}:") for _ in range(2)]
    yield limiters
    cleanup = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in cleanup.scan_iter(f"test:{unique}:*")]
    if keys:
        await cleanup.delete(*keys)
    await cleanup.aclose()
    for limiter in limiters:
        await limiter.close()


async def test_two_instances_enforce_one_limit_together(two_containers) -> None:
    a, b = two_containers
    decisions = [await (a if i % 2 else b).check_rate("key-1", 5) for i in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert 55 < refused.retry_after_s <= 60 and refused.headers()["Retry-After"] in {"59", "60"}
    assert (await a.check_rate("key-2", 5)).allowed  # other keys are separate


async def test_concurrent_checks_are_atomic(two_containers) -> None:
    a, b = two_containers
    results = await asyncio.gather(*((a, b)[i % 2].check_rate("burst", 20) for i in range(60)))
    assert sum(r.allowed for r in results) == 20


async def test_window_slides(redis_url: str, unique: str) -> None:
    limiter = RedisLimiter.from_url(redis_url, prefix=f"test:{unique}:", window_s=1.0)
    try:
        assert all([(await limiter.check_rate("k", 3)).allowed for _ in range(3)])
        refused = await limiter.check_rate("k", 3)
        assert not refused.allowed and 0 < refused.retry_after_s <= 1.0
        await asyncio.sleep(refused.retry_after_s + 0.05)
        assert (await limiter.check_rate("k", 3)).allowed
    finally:
        await limiter.client.delete(f"test:{unique}:rate:k")
        await limiter.close()


async def test_concurrency_cap_shared_by_instances(two_containers) -> None:
    a, b = two_containers
    leases = [
        await a.acquire_stream("key", 3),
        await b.acquire_stream("key", 3),
        await a.acquire_stream("key", 3),
    ]
    for limiter in (a, b):
        with pytest.raises(TooManyConcurrentStreams) as info:
            await limiter.acquire_stream("key", 3)
        assert info.value.code == "TOO_MANY_CONCURRENT_REQUESTS"
    assert await a.active_streams("key") == 3

    await leases[0].release()
    await leases[0].release()  # idempotent: frees one slot, not two
    replacement = await b.acquire_stream("key", 3)
    with pytest.raises(TooManyConcurrentStreams):
        await a.acquire_stream("key", 3)
    for lease in (*leases[1:], replacement):
        await lease.release()
    assert await b.active_streams("key") == 0


async def test_held_leases_are_renewed_and_crashed_ones_expire(redis_url: str, unique: str) -> None:
    prefix = f"test:{unique}:"
    live = RedisLimiter.from_url(redis_url, prefix=prefix, lease_ttl_s=0.4, heartbeat_s=0.1)
    other = RedisLimiter.from_url(redis_url, prefix=prefix, lease_ttl_s=0.4)
    try:
        held = await live.acquire_stream("long", 1)
        await asyncio.sleep(1.0)  # 2.5 x the TTL: the heartbeat kept it
        with pytest.raises(TooManyConcurrentStreams):
            await other.acquire_stream("long", 1)

        # A container that dies stops renewing and never releases.
        crashed = RedisLimiter.from_url(redis_url, prefix=prefix, lease_ttl_s=0.4, heartbeat_s=60)
        await crashed.acquire_stream("crash", 1)
        await crashed.close()
        with pytest.raises(TooManyConcurrentStreams):
            await other.acquire_stream("crash", 1)
        await asyncio.sleep(0.5)
        lease = await other.acquire_stream("crash", 1)  # the slot came back by itself
        await lease.release()
        await held.release()
    finally:
        await live.client.delete(f"{prefix}conc:long", f"{prefix}conc:crash")
        await live.close()
        await other.close()


async def test_unreachable_redis_falls_back_quickly_and_reports_it() -> None:
    from tests.integration.conftest import free_port

    limiter = FallbackLimiter(
        RedisLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0"), retry_interval_s=60
    )
    try:
        started = time.perf_counter()
        await limiter.start()
        probe_s = time.perf_counter() - started
        assert backend_up() == 0  # known before the first request
        started = time.perf_counter()
        decisions = [await limiter.check_rate("k", 2) for _ in range(3)]
        elapsed = time.perf_counter() - started
        assert [d.allowed for d in decisions] == [True, True, False]
        assert backend_up() == 0 and not limiter.shared_backend_up
        lease = await limiter.acquire_stream("k", 1)
        with pytest.raises(TooManyConcurrentStreams):
            await limiter.acquire_stream("k", 1)
        await lease.release()
        print(
            f"\nfallback: start-up probe {probe_s * 1000:.1f} ms, then 3 local decisions {elapsed * 1000:.2f} ms"
        )
        assert probe_s < 2.0 and elapsed < 0.1
    finally:
        await limiter.close()


async def test_redis_outage_and_recovery(private_redis) -> None:
    server = private_redis()
    limiter = FallbackLimiter(RedisLimiter.from_url(server.url), retry_interval_s=0.1)
    peer = RedisLimiter.from_url(server.url)
    try:
        assert (await limiter.check_rate("k", 100)).allowed
        assert backend_up() == 1

        server.kill()
        assert (await limiter.check_rate("k", 100)).allowed  # answered locally, not an error
        assert backend_up() == 0

        server.start()  # same port, empty data
        deadline = time.monotonic() + 10
        while not limiter.shared_backend_up and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert backend_up() == 1
        for _ in range(3):
            await peer.check_rate("shared", 3)
        assert not (await limiter.check_rate("shared", 3)).allowed  # one shared limit again
    finally:
        await limiter.close()
        await peer.close()


async def test_a_release_lost_in_an_outage_is_retried_when_redis_returns(private_redis) -> None:
    """Redis frozen (SIGSTOP: its data survive) while a stream ends: the slot is freed as soon as it answers
    again, not after the 60 s lease TTL."""
    import signal

    server = private_redis()
    limiter = FallbackLimiter(RedisLimiter.from_url(server.url), retry_interval_s=0.1)
    peer = RedisLimiter.from_url(server.url)
    try:
        lease = await limiter.acquire_stream("leaky", 1)
        assert await peer.active_streams("leaky") == 1
        server.proc.send_signal(signal.SIGSTOP)
        try:
            await lease.release()  # times out against the frozen server
            assert len(limiter.pending_releases) == 1 and backend_up() == 0
        finally:
            server.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while (limiter.pending_releases or not limiter.shared_backend_up) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert limiter.pending_releases == [] and await peer.active_streams("leaky") == 0
        assert (await limiter.acquire_stream("leaky", 1)).lease_id  # the key is usable at once
    finally:
        await limiter.close()
        await peer.close()
