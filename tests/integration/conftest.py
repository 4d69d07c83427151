"""Fixtures for tests against the real PostgreSQL and Redis servers that scripts/start_services runs.

    export $(scripts/start_services)
    .venv/bin/python -m pytest tests/integration -q

Without TTS_TEST_DATABASE_URL / TTS_TEST_REDIS_URL, or when a server does not answer, the tests that need
it are skipped with the reason. Tests never truncate tables or flush Redis: every test uses its own
request ids, key ids and Redis key prefix, so parallel sessions do not disturb each other.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RunningServer

ROOT = Path(__file__).resolve().parents[2]
START_HINT = "run `export $(scripts/start_services)` first"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(scope="module")
def image_python() -> Path:
    """The lent GPU image recreated on this CPU (bench/gpu/image_venv.py; built once, later callers wait on its lock)."""
    from bench.gpu import image_venv

    return image_venv.ensure()


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of the test database, with deploy/sql migrations applied."""
    import asyncpg

    from services.usage.migrations import apply_migrations

    dsn = os.environ.get("TTS_TEST_DATABASE_URL")
    if not dsn:
        pytest.skip(f"TTS_TEST_DATABASE_URL is not set; {START_HINT}")

    async def check() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()
        await apply_migrations(dsn)

    try:
        asyncio.run(check())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(
            f"PostgreSQL at TTS_TEST_DATABASE_URL is unreachable ({type(exc).__name__}); {START_HINT}"
        )
    return dsn


def create_credit_key(dsn: str, owner: str, credit_balance: int = 10_000) -> tuple[str, str]:
    """A new API key in PostgreSQL with a credit balance: (the raw key, its key id)."""
    from services.access import PostgresKeyStore

    async def create() -> tuple[str, str]:
        store = PostgresKeyStore(dsn)
        try:
            raw, record = await store.create_key(
                owner, key_id=f"{owner}-{uuid.uuid4().hex[:12]}", credit_balance=credit_balance
            )
        finally:
            await store.close()
        return raw, record.key_id

    return asyncio.run(create())


def keyed_env(pg_dsn: str, **settings: str) -> dict[str, str]:
    """A server's settings with keys and credits in PostgreSQL; `settings` (TTS_* names) add to or replace them."""
    base = {"TTS_AUTH_ENABLED": "true", "TTS_KEY_BACKEND": "postgres", "TTS_DATABASE_URL": pg_dsn}
    return base | {"TTS_CREDITS_ENABLED": "true"} | settings


@contextmanager
def keyed_server(pg_dsn: str, model_dir: Path, log_dir: Path, **settings: str) -> Iterator[RunningServer]:
    """A server of the demo model with `keyed_env(pg_dsn, **settings)`, stopped when the block ends."""
    from tests.e2e.conftest import start_server, stop_server

    running = start_server(model_dir, log_dir / "server.log", keyed_env(pg_dsn, **settings))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = os.environ.get("TTS_TEST_REDIS_URL")
    if not url:
        pytest.skip(f"TTS_TEST_REDIS_URL is not set; {START_HINT}")
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at TTS_TEST_REDIS_URL is unreachable ({type(exc).__name__}); {START_HINT}")
    finally:
        client.close()
    return url


@pytest.fixture
def unique() -> str:
    """A short random tag for ids and key prefixes owned by one test."""
    return uuid.uuid4().hex[:12]


@dataclass
class PostgresControl:
    """Stops and starts the test PostgreSQL server (fault injection) through the project's scripts."""

    dsn: str

    def _run(self, script: str) -> float:
        started = time.perf_counter()
        # The server of this DSN, not the default one: tests/conftest.py drops TTS_* variables (TTS_PG_PORT too), so
        # without this a test run against a private server would stop the shared one.
        env = {**os.environ, "TTS_PG_PORT": str(urlparse(self.dsn).port or 5432)}
        subprocess.run(
            [str(ROOT / "scripts" / script)], check=True, capture_output=True, timeout=120, env=env
        )
        return time.perf_counter() - started

    def stop(self) -> float:
        return self._run("stop_postgres")

    def start(self) -> float:
        return self._run("start_postgres")

    async def astop(self) -> float:
        return await asyncio.to_thread(self.stop)

    async def astart(self) -> float:
        return await asyncio.to_thread(self.start)


@pytest.fixture
def pg_control(pg_dsn: str) -> Iterator[PostgresControl]:
    """Fault injection on the local server only; PostgreSQL is always running again after the test."""
    host = urlparse(pg_dsn).hostname or ""
    if host not in LOOPBACK:
        pytest.skip(f"stopping PostgreSQL is only done for a local test server, not {host}")
    if not os.access(ROOT / "scripts" / "stop_postgres", os.X_OK):
        pytest.skip("scripts/stop_postgres is missing")
    control = PostgresControl(pg_dsn)
    try:
        yield control
    finally:
        control.start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrivateRedis:
    """A redis-server owned by one test, so it can be killed and restarted without touching the shared one."""

    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[Callable[[], PrivateRedis]]:
    if shutil.which("redis-server") is None:
        pytest.skip(f"redis-server is not installed; {START_HINT}")
    servers: list[PrivateRedis] = []

    def make() -> PrivateRedis:
        server = PrivateRedis(free_port())
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()
