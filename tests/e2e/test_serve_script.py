"""scripts/serve never switches auth off implicitly except for the demo model on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e


def _serve(env_extra: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_") or k.startswith("TTS_TEST_")}
    env.update(
        {
            "TTS_PORT": str(port),
            "TTS_DEVICE": "cpu",
            "TTS_WARMUP": "false",
            "TTS_SR_ENABLED": "false",
            "OMP_NUM_THREADS": "1",
            **env_extra,
        }
    )
    proc = subprocess.Popen(
        ["bash", "scripts/serve"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/tts/health", timeout=2)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.5)
    raise AssertionError(log.read_text(errors="replace")[-3000:])


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_demo_model_without_keys_is_open_on_loopback_only(tmp_path: Path) -> None:
    proc, port = _serve({"TTS_DEMO_DIR": str(tmp_path / "demo")}, tmp_path / "serve.log")
    try:
        assert "auth OFF, listening on loopback only" in (tmp_path / "serve.log").read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/v1/audio/voices", timeout=10).status_code == 200
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        _stop(proc)


def test_a_real_model_dir_or_a_database_key_store_keeps_auth_on(tmp_path: Path, demo_model_dir: Path) -> None:
    proc, port = _serve(
        {"TTS_MODEL_DIR": str(demo_model_dir), "TTS_HOST": "127.0.0.1"}, tmp_path / "serve.log"
    )
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/v1/tts/generate", json={"text": "hi"}, timeout=10)
        assert response.status_code == 401 and response.json()["error"]["code"] == "INVALID_API_KEY"
    finally:
        _stop(proc)


def test_websockets_decline_compression_a_client_offers(tmp_path: Path) -> None:
    """Pipecat's clients offer permessage-deflate; deflating base64 audio costs the one event loop ~1 ms per audio
    second, so what ships declines it (TTS_WS_DEFLATE=true accepts it)."""
    import asyncio

    from websockets.asyncio.client import connect

    async def extensions(port: int) -> list[str]:
        async with connect(f"ws://127.0.0.1:{port}/v1/tts/ws", compression="deflate") as socket:
            return [type(e).__name__ for e in socket.protocol.extensions]

    for setting, expected in (("false", []), ("true", ["PerMessageDeflate"])):
        proc, port = _serve(
            {"TTS_DEMO_DIR": str(tmp_path / "demo"), "TTS_WS_DEFLATE": setting},
            tmp_path / f"serve-{setting}.log",
        )
        try:
            assert asyncio.run(extensions(port)) == expected, setting
        finally:
            _stop(proc)
