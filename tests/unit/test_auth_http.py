"""A flood of random keys from one address stops reaching the key store; valid keys keep working."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings


def test_random_key_flood_is_throttled_per_address(demo_model_dir: Path) -> None:
    settings = Settings(model_dir=demo_model_dir, auth_enabled=True, api_keys="good-key", warmup=False,
                        log_json=False, auth_failures_per_minute=20)
    with TestClient(create_app(settings, runtime=ModelRuntime(settings))) as client:
        authenticator = client.app.state.services.access.authenticator
        codes = [client.post("/v1/tts/generate", json={"text": "hi"},
                             headers={"Authorization": f"Bearer random-{i}"}).status_code
                 for i in range(300)]
        assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
        assert authenticator.store_lookups == 20  # not 300
        refused = client.post("/v1/tts/generate", json={"text": "hi"}, headers={"Authorization": "Bearer random-x"})
        assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED" and int(refused.headers["Retry-After"]) > 0


class NeverReady(ModelRuntime):
    async def start(self) -> None:  # stays "starting": every request that passes the limits gets 503
        return None


def test_a_concurrency_refusal_keeps_the_rate_headers_and_uses_no_rate_slot(demo_model_dir: Path) -> None:
    import asyncio

    settings = Settings(model_dir=demo_model_dir, auth_enabled=True, api_keys="k1", warmup=False, log_json=False,
                        max_concurrent_streams=1, rate_limit_per_minute=5)
    with TestClient(create_app(settings, runtime=NeverReady(settings))) as client:
        limiter = client.app.state.services.access.limiter
        key_id = client.portal.call(client.app.state.services.access.authenticate, {"authorization": "Bearer k1"}).key_id
        lease = client.portal.call(limiter.acquire_stream, key_id, 1)  # another request holds the only slot
        for _ in range(8):
            refused = client.post("/v1/tts/generate", json={"text": "hi"}, headers={"Authorization": "Bearer k1"})
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "TOO_MANY_CONCURRENT_REQUESTS"
            assert "X-RateLimit-Limit" not in refused.headers and int(refused.headers["Retry-After"]) >= 1
        client.portal.call(lease.release)
        # 8 concurrency refusals used none of the 5 per-minute slots: 5 more pass the limits (503 here: the
        # model is not loaded), the 6th is refused for the rate.
        codes = [client.post("/v1/tts/generate", json={"text": "hi"}, headers={"Authorization": "Bearer k1"})
                 .json()["error"]["code"] for _ in range(6)]
        assert codes == ["MODEL_NOT_LOADED"] * 5 + ["RATE_LIMIT_EXCEEDED"]
        assert asyncio.iscoroutinefunction(lease.release)
