"""Idle sleep on a real server (uvicorn, demo checkpoint, transformers engine, TTS_IDLE_SLEEP_S=1): health and
/metrics say asleep once idle, a request wakes it and states the extra latency in X-Wake-Ms, and the wake is logged
and counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server


@pytest.fixture(scope="module")
def sleepy(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log_path = tmp_path_factory.mktemp("idle") / "server.log"
    running = start_server(demo_model_dir, log_path, {"TTS_IDLE_SLEEP_S": "1", "TTS_WARMUP": "false"})
    yield running
    stop_server(running)


def metric(server: RunningServer, name: str) -> dict[str, float]:
    lines = httpx.get(f"{server.base_url}/metrics", timeout=10).text.splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(name) and not line.startswith("#")
    }


def test_it_sleeps_when_idle_and_the_first_request_states_its_wake(sleepy: RunningServer) -> None:
    body = sleepy.wait_health(lambda b: b.get("idle_sleep") == "asleep", timeout_s=30)
    assert body["status"] in ("healthy", "degraded") and body["state"] == "ready"  # asleep is still ready
    assert httpx.get(f"{sleepy.base_url}/v1/tts/ready", timeout=5).status_code == 200
    states = metric(sleepy, "veena3_tts_idle_sleep_state")
    assert states['veena3_tts_idle_sleep_state{state="asleep"}'] == 1.0
    assert states['veena3_tts_idle_sleep_state{state="awake"}'] == 0.0

    response = httpx.post(
        f"{sleepy.base_url}/v1/tts/generate", json={"text": "Wake up.", "max_tokens": 30}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Wake-Ms"]) >= 0
    assert metric(sleepy, "veena3_tts_idle_wake_seconds_count")["veena3_tts_idle_wake_seconds_count"] >= 1
    wakes = [line for line in sleepy.log_text().splitlines() if "idle wake" in line]
    assert wakes and "wake_ms" in wakes[0]
    # Idle again afterwards: asleep once more, and the next request wakes it again.
    sleepy.wait_health(lambda b: b.get("idle_sleep") == "asleep", timeout_s=30)
    again = httpx.post(
        f"{sleepy.base_url}/v1/audio/speech", json={"input": "Again.", "voice": "alloy"}, timeout=60
    )
    assert again.status_code == 200 and "X-Wake-Ms" in again.headers
