"""Readiness answers 503 until start-up (model load and warm-up) has finished."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal


class SlowRuntime(ModelRuntime):
    """Start-up that waits for the test's signal before loading."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.release = asyncio.Event()

    async def start(self) -> None:
        await self.release.wait()
        await super().start()


def test_ready_is_503_until_start_up_finished(demo_model_dir: Path) -> None:
    settings = Settings(model_dir=demo_model_dir, auth_enabled=False, warmup=True, log_json=False)
    runtime = SlowRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        assert client.get("/v1/tts/ready").status_code == 503
        health = client.get("/v1/tts/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        early = client.post("/v1/tts/generate", json={"text": "Too early."})
        assert early.status_code == 503 and early.json()["error"]["code"] == "MODEL_NOT_LOADED"
        assert early.headers["Retry-After"]
        client.portal.call(runtime.release.set)
        wait_in_portal(client, lambda: client.get("/v1/tts/ready").status_code == 200)
        assert client.get("/v1/tts/ready").json() == {"ready": True, "state": "ready", "error": None}
        assert client.get("/v1/tts/health").json()["status"] == "healthy"


def test_a_broken_model_directory_is_unhealthy_with_the_reason(tmp_path: Path) -> None:
    settings = Settings(model_dir=tmp_path / "missing", auth_enabled=False, log_json=False)
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.state.value == "failed")
        health = client.get("/v1/tts/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy" and "missing" in health.json()["error"]
        assert client.get("/v1/tts/ready").status_code == 503


class WarmupFails(ModelRuntime):
    async def warmup(self) -> None:
        raise RuntimeError("the model produced no global tokens")


def test_a_warm_up_failure_stays_up_not_ready_with_the_reason(demo_model_dir: Path) -> None:
    """No restart loop: the process answers (health 200, degraded, the reason), readiness says 503."""
    settings = Settings(model_dir=demo_model_dir, auth_enabled=False, warmup=True, log_json=False)
    runtime = WarmupFails(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.state.value == "warmup_failed")
        health = client.get("/v1/tts/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert "warm-up failed" in health.json()["error"] and "no global tokens" in health.json()["error"]
        ready = client.get("/v1/tts/ready")
        assert ready.status_code == 503 and ready.json()["state"] == "warmup_failed"


def test_the_deployment_text_limit_applies_to_http(demo_model_dir: Path) -> None:
    settings = Settings(
        model_dir=demo_model_dir, auth_enabled=False, warmup=False, log_json=False, max_text_chars=10
    )
    with TestClient(create_app(settings, runtime=SlowRuntime(settings))) as client:
        response = client.post("/v1/tts/generate", json={"text": "x" * 11})
        assert response.status_code == 413
        assert (
            response.json()["error"]["code"] == "TEXT_TOO_LONG"
            and "at most 10" in response.json()["error"]["message"]
        )
        openai = client.post("/v1/audio/speech", json={"input": "y" * 11, "voice": "alloy"})
        assert openai.status_code == 413 and openai.json()["error"]["param"] == "input"


def test_every_503_says_when_to_retry() -> None:
    from api.errors import ApiError, error_response

    for code in ("MODEL_NOT_LOADED", "SERVICE_UNAVAILABLE", "GPU_FAULT", "GPU_OOM"):
        response = error_response(ApiError(code, "try later"))
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0


def test_public_deployment_switches_hide_docs_and_protect_metrics(demo_model_dir: Path) -> None:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        docs_enabled=False,
        metrics_require_admin=True,
        admin_key="adm",
    )
    with TestClient(create_app(settings, runtime=SlowRuntime(settings))) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404
        assert client.get("/metrics").status_code == 403
        assert client.get("/metrics", headers={"X-Admin-Key": "adm"}).status_code == 200
    open_settings = Settings(model_dir=demo_model_dir, auth_enabled=False, warmup=False, log_json=False)
    with TestClient(create_app(open_settings, runtime=SlowRuntime(open_settings))) as client:
        assert client.get("/openapi.json").status_code == 200 and client.get("/metrics").status_code == 200


def test_every_http_answer_is_counted_by_route_and_status_and_cors_is_opt_in(demo_model_dir: Path) -> None:
    from shared.metrics import REGISTRY

    def count(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        return REGISTRY.get_sample_value("veena3_tts_http_requests_total", labels) or 0.0

    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        cors_origins="https://app.example.com",
    )
    with TestClient(create_app(settings, runtime=SlowRuntime(settings))) as client:
        before = (
            count("/v1/tts/generate", "POST", "400"),
            count("unmatched", "GET", "404"),
            count("/v1/tts/ready", "GET", "503"),
        )
        assert client.post("/v1/tts/generate", json={"text": ""}).status_code == 400
        assert client.get("/nowhere/12345").status_code == 404
        assert client.get("/v1/tts/ready").status_code == 503
        assert (
            count("/v1/tts/generate", "POST", "400"),
            count("unmatched", "GET", "404"),
            count("/v1/tts/ready", "GET", "503"),
        ) == tuple(b + 1 for b in before)
        assert 'route="/nowhere/12345"' not in client.get("/metrics").text  # raw paths never become labels
        preflight = client.options(
            "/v1/tts/generate",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        other = client.get("/v1/tts/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
