"""An invalid key configuration is refused at start: a real server (uvicorn, as deployed) with a key file it cannot
use, or a Wyoming listener whose key the key store refuses, exits with the reason instead of listening and answering
every request 401 (or every Wyoming connection an error) while health says healthy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI

from api.app import create_app
from api.protocols.wyoming import WyomingConfigError
from services.access import hash_key
from shared.settings import Settings
from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

KEY = "tts_e2e-key-config-0123456789"


def _start(model_dir: Path, env: dict[str, str], timeout_s: float = 120) -> tuple[int, str]:
    """Run the server as deployed until it exits (it must, within `timeout_s`); its exit status and log."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TTS_") or k.startswith("TTS_TEST_")}
    environ.update(
        {
            "TTS_MODEL_DIR": str(model_dir),
            "TTS_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
            "TTS_LOG_JSON": "false",
        }
    )
    environ.update(env)
    command = [sys.executable, "-m", "uvicorn", "--factory", "api:create_app", "--port", str(port)]
    try:
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired as exc:  # it listened instead: the defect
        raise AssertionError(f"the server did not refuse to start:\n{exc.stdout}\n{exc.stderr}") from None
    return done.returncode, done.stdout + done.stderr


def test_a_key_file_it_cannot_use_stops_the_server(demo_model_dir: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"key_id": "a", "key_hash": "not-a-digest"}]}))
    status, log = _start(demo_model_dir, {"TTS_AUTH_ENABLED": "true", "TTS_API_KEYS_FILE": str(keys)})
    assert status != 0
    assert f"TTS_API_KEYS_FILE={keys}: key record 1" in log and "64 lowercase hex" in log


def test_a_wyoming_key_the_store_refuses_stops_the_server(demo_model_dir: Path) -> None:
    """On 0.0.0.0 with a key that is not one of the service's: the listener used to bind, refuse every connection
    and leave health at healthy."""
    port = free_port()
    status, log = _start(
        demo_model_dir,
        {
            "TTS_AUTH_ENABLED": "true",
            "TTS_API_KEYS": "the-only-key",
            "TTS_WYOMING_ENABLED": "true",
            "TTS_WYOMING_HOST": "0.0.0.0",
            "TTS_WYOMING_PORT": str(port),
            "TTS_WYOMING_API_KEY": "not-a-key-of-this-service",
        },
    )
    assert status != 0
    assert "TTS_WYOMING_API_KEY is refused by the key store (INVALID_API_KEY" in log
    with socket.socket() as probe:  # nothing was left listening
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def _wyoming_app(model_dir: Path, keys: Path, **values: object) -> FastAPI:
    settings = Settings(
        model_dir=model_dir,
        device="cpu",
        sr_enabled=False,
        log_json=False,
        auth_enabled=True,
        api_keys_file=keys,
        wyoming_enabled=True,
        wyoming_port=free_port(),
        wyoming_api_key=KEY,
        **values,  # type: ignore[arg-type]
    )
    return create_app(settings)


@pytest.mark.parametrize(("status", "code"), [("revoked", "INVALID_API_KEY"), ("suspended", "KEY_SUSPENDED")])
async def test_a_revoked_or_suspended_wyoming_key_fails_start_up(
    demo_model_dir: Path, tmp_path: Path, status: str, code: str
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key_id": "wyoming", "key_hash": hash_key(KEY), "status": status}]))
    app = _wyoming_app(demo_model_dir, keys)
    with pytest.raises(WyomingConfigError, match=code):
        async with app.router.lifespan_context(app):
            pass


async def test_an_active_wyoming_key_starts(demo_model_dir: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key_id": "wyoming", "key_hash": hash_key(KEY)}]))
    app = _wyoming_app(demo_model_dir, keys)
    async with app.router.lifespan_context(app):
        assert app.state.wyoming._server is not None  # noqa: SLF001 - it listens
