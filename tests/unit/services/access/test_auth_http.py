"""A flood of random keys from one address stops reaching the key store; valid keys keep working."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings


def test_random_key_flood_is_throttled_per_address(demo_model_dir: Path) -> None:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys="good-key",
        warmup=False,
        log_json=False,
        auth_failures_per_minute=20,
    )
    with TestClient(create_app(settings, runtime=ModelRuntime(settings))) as client:
        authenticator = client.app.state.services.access.authenticator
        codes = [
            client.post(
                "/v1/tts/generate", json={"text": "hi"}, headers={"Authorization": f"Bearer random-{i}"}
            ).status_code
            for i in range(300)
        ]
        assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
        assert authenticator.store_lookups == 20  # not 300
        refused = client.post(
            "/v1/tts/generate", json={"text": "hi"}, headers={"Authorization": "Bearer random-x"}
        )
        assert (
            refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
            and int(refused.headers["Retry-After"]) > 0
        )


class NeverReady(ModelRuntime):
    async def start(self) -> None:  # stays "starting": every request that passes the limits gets 503
        return None


def test_a_concurrency_refusal_keeps_the_rate_headers_and_uses_no_rate_slot(demo_model_dir: Path) -> None:
    import asyncio

    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys="k1",
        warmup=False,
        log_json=False,
        max_concurrent_streams=1,
        rate_limit_per_minute=5,
    )
    with TestClient(create_app(settings, runtime=NeverReady(settings))) as client:
        limiter = client.app.state.services.access.limiter
        key_id = client.portal.call(
            client.app.state.services.access.authenticate, {"authorization": "Bearer k1"}
        ).key_id
        lease = client.portal.call(limiter.acquire_stream, key_id, 1)  # another request holds the only slot
        for _ in range(8):
            refused = client.post(
                "/v1/tts/generate", json={"text": "hi"}, headers={"Authorization": "Bearer k1"}
            )
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "TOO_MANY_CONCURRENT_REQUESTS"
            assert "X-RateLimit-Limit" not in refused.headers and int(refused.headers["Retry-After"]) >= 1
        client.portal.call(lease.release)
        # 8 concurrency refusals used none of the 5 per-minute slots: 5 more pass the limits (503 here: the
        # model is not loaded), the 6th is refused for the rate.
        codes = [
            client.post(
                "/v1/tts/generate", json={"text": "hi"}, headers={"Authorization": "Bearer k1"}
            ).json()["error"]["code"]
            for _ in range(6)
        ]
        assert codes == ["MODEL_NOT_LOADED"] * 5 + ["RATE_LIMIT_EXCEEDED"]
        assert asyncio.iscoroutinefunction(lease.release)


def test_failed_logins_do_not_lock_out_good_keys_and_the_admin_key_is_throttled(demo_model_dir: Path) -> None:
    """After failures from one address (behind a proxy: every user), a key in use there keeps
    working; the proxy's X-Forwarded-For names the client when TTS_TRUSTED_PROXIES trusts it; one bad key is
    throttled from any address; wrong X-Admin-Key guesses are throttled too."""
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys="used-key,cold-key",
        warmup=False,
        log_json=False,
        auth_failures_per_minute=3,
        rate_limit_per_minute=10_000,
        trusted_proxies="*",
        admin_key="the-admin-key",
    )
    with TestClient(create_app(settings, runtime=NeverReady(settings))) as client:

        def code(key: str, client_address: str) -> str:
            answer = client.post(
                "/v1/tts/generate",
                json={"text": "hi"},
                headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": client_address},
            )
            return answer.json()["error"][
                "code"
            ]  # MODEL_NOT_LOADED: authenticated (the model never loads here)

        assert code("used-key", "10.0.0.1") == "MODEL_NOT_LOADED"
        assert [code(f"wrong-{i}", "10.0.0.1") for i in range(4)] == ["INVALID_API_KEY"] * 3 + [
            "RATE_LIMIT_EXCEEDED"
        ]
        assert code("used-key", "10.0.0.1") == "MODEL_NOT_LOADED"  # a key in use is not locked out
        # A real key not yet used in this process passes too: the key store's list names it.
        assert code("cold-key", "10.0.0.1") == "MODEL_NOT_LOADED"
        assert code("cold-key", "10.0.0.2") == "MODEL_NOT_LOADED"  # another client behind the same proxy

        # One bad key, many addresses: throttled by the key material.
        assert [code("leaked-revoked", f"10.0.1.{i}") for i in range(4)] == (
            ["INVALID_API_KEY"] * 3 + ["RATE_LIMIT_EXCEEDED"]
        )

        def admin(key: str, client_address: str) -> int:
            return client.get(
                "/v1/tts/debug/stats", headers={"X-Admin-Key": key, "X-Forwarded-For": client_address}
            ).status_code

        assert [admin(f"guess-{i}", "10.0.2.1") for i in range(4)] == [403, 403, 403, 429]
        assert admin("the-admin-key", "10.0.2.1") == 429  # not even compared while the guesses are throttled
        assert admin("the-admin-key", "10.0.2.2") == 200
