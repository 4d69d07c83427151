"""Health, readiness and the demo-model warning on a real server (scripts/serve's configuration)."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import RunningServer


def test_health_reports_the_demo_model(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/v1/tts/health", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] in ("healthy", "degraded")
    assert body["model_loaded"] is True and body["demo_model"] is True
    assert body["model_version"].startswith("demo-")
    assert body["uptime_seconds"] > 0 and body["gpu_available"] is False and body["app_version"]
    assert response.headers["X-Model-Version"] == body["model_version"]
    assert response.headers["X-App-Version"] == body["app_version"]


def test_ready_after_warm_up(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/v1/tts/ready", timeout=10)
    assert response.status_code == 200 and response.json()["ready"] is True


def test_one_clear_warning_that_the_demo_audio_is_noise(server: RunningServer) -> None:
    warnings = [line for line in server.log_text().splitlines() if "the audio will be noise" in line]
    assert len(warnings) == 1
    assert "TTS_MODEL_DIR" in warnings[0] and '"level": "WARNING"' in warnings[0]
