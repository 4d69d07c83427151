"""A flood of random keys from one address stops reaching the key store; valid keys keep working."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api import create_app
from services.runtime import ModelRuntime
from shared.settings import Settings


def test_random_key_flood_is_throttled_per_address(demo_model_dir: Path) -> None:
    settings = Settings(model_dir=demo_model_dir, auth_enabled=True, api_keys="good-key", warmup=False,
                        log_json=False, auth_failures_per_minute=20)
    with TestClient(create_app(settings, runtime=ModelRuntime(settings))) as client:
        authenticator = client.app.state.access.authenticator
        codes = [client.post("/v1/tts/generate", json={"text": "hi"},
                             headers={"Authorization": f"Bearer random-{i}"}).status_code
                 for i in range(300)]
        assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
        assert authenticator.store_lookups == 20  # not 300
        refused = client.post("/v1/tts/generate", json={"text": "hi"}, headers={"Authorization": "Bearer random-x"})
        assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED" and int(refused.headers["Retry-After"]) > 0
