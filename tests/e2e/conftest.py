"""A real uvicorn server on the demo checkpoint, started as a subprocess on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class InProcessServer:
    """uvicorn serving an app in a thread of this process, on its own event loop (so a test can look inside)."""

    loop: asyncio.AbstractEventLoop
    base_url: str
    port: int


@contextmanager
def in_process_server(app, name: str) -> Iterator[InProcessServer]:
    """Serve `app` on a free loopback port in a background thread until ready (/v1/tts/ready 200, at most 120 s);
    stop it and close its loop on exit."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert thread.is_alive(), "the in-process server stopped"
            try:
                if httpx.get(f"{base_url}/v1/tts/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "in-process server not ready in 120 s"
            time.sleep(0.2)
        yield InProcessServer(loop, base_url, port)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if not loop.is_closed() and not loop.is_running():
            loop.close()


@dataclass
class WyomingServer:
    """An in-process server with Wyoming on: its app, the Wyoming port and the HTTP base URL."""

    app: Any
    port: int
    base_url: str


@contextmanager
def wyoming_server(model_dir: Path, name: str, **values: Any) -> Iterator[WyomingServer]:
    """The demo checkpoint on the CPU (no super-resolution, plain logs at WARNING, no auth unless `values` say) with
    Wyoming on a free port, served in process (`in_process_server`); `values` are further Settings fields."""
    from api.app import create_app  # here: most e2e modules only start subprocesses and need not load the app
    from shared.settings import Settings

    port = free_port()
    settings = Settings(
        model_dir=model_dir,
        device="cpu",
        sr_enabled=False,
        log_json=False,
        log_level="WARNING",
        **{"auth_enabled": False, **values},
        wyoming_enabled=True,
        wyoming_port=port,
    )
    app = create_app(settings)
    with in_process_server(app, name) as server:
        yield WyomingServer(app, port, server.base_url)


@dataclass
class RunningServer:
    base_url: str
    process: subprocess.Popen
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_health(self, predicate, timeout_s: float = 120.0) -> dict:
        """Poll /v1/tts/health until `predicate(body)` is true; return the body."""
        deadline = time.monotonic() + timeout_s
        body: dict = {}
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"{self.base_url}/v1/tts/health", timeout=5).json()
                if predicate(body):
                    return body
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"health never matched within {timeout_s}s; last: {body}")


def start_server(
    model_dir: Path,
    log_path: Path,
    env_overrides: dict[str, str] | None = None,
    timeout_s: float = 180.0,
    *,
    wait_ready: bool = True,
    standin: list[str] | None = None,
) -> RunningServer:
    """`wait_ready=False`: return as soon as the server answers /v1/tts/health at all (any status).
    `standin`: serve with stand-ins injected (`python -m bench.standin.serve` with these arguments, e.g.
    `["--fault", "loop:40:1"]`) instead of the plain app."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_") or k.startswith("TTS_TEST_")}
    env.update(
        {
            "TTS_MODEL_DIR": str(model_dir),
            "TTS_AUTH_ENABLED": "false",
            "TTS_DEVICE": "cpu",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    env.update(env_overrides or {})
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed when the server stops
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ]
        if standin is None
        else [
            sys.executable,
            "-m",
            "bench.standin.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *standin,
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')[-4000:]}")
        try:
            if not wait_ready:
                httpx.get(f"{base_url}/v1/tts/health", timeout=2)
                return RunningServer(base_url, process, log_path)
            if httpx.get(f"{base_url}/v1/tts/ready", timeout=2).status_code == 200:
                return RunningServer(base_url, process, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server not ready in {timeout_s}s:\n{log_path.read_text(errors='replace')[-4000:]}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    running = start_server(demo_model_dir, log_path)
    yield running
    stop_server(running)


@contextmanager
def keyed_server(
    model_dir: Path, factory: pytest.TempPathFactory, name: str, keys: list[str]
) -> Iterator[RunningServer]:
    """A server with auth on, these static keys and a voice library of its own; stopped on exit."""
    running = start_server(
        model_dir,
        factory.mktemp(name) / "server.log",
        {
            "TTS_AUTH_ENABLED": "true",
            "TTS_API_KEYS": ",".join(keys),
            "TTS_VOICE_DIR": str(factory.mktemp(f"{name}-voices")),
        },
    )
    try:
        yield running
    finally:
        stop_server(running)
