"""Unit tests run in-process and start no servers: no listening socket, no server subprocess. A test that needs one
(an HTTP stand-in, uvicorn, a bench server, PostgreSQL, Redis, Prometheus) belongs in tests/integration.

The guard below makes the rule fail loudly instead of resting on review: it wraps `socket.socket.listen` (every
in-process server calls it: http.server, asyncio's create_server, uvicorn) and `subprocess.Popen` (subprocess.run
and asyncio's subprocesses go through it) while a unit module runs, and bench/harness.py's `spawn_server` (the benches'
server launcher, whatever command it is given). A program a child process starts in turn is out of its sight.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import harness

MOVE = "unit tests start no servers: move this test to tests/integration"

# argv words that name a server: a program's file name, a module after `-m`, a script's path.
SERVER_PROGRAMS = frozenset(
    {"uvicorn", "gunicorn", "postgres", "pg_ctl", "redis-server", "prometheus", "prometheus-pushgateway"}
)
SERVER_MODULES = frozenset({"uvicorn", "http.server", "bench.standin.serve"})
SERVER_SCRIPTS = ("bench/serve_paced.py", "scripts/start_services")


def server_named(args: object) -> str | None:
    """The word of a Popen `args` that names a server, or None."""
    if isinstance(args, (str, bytes, Path)):
        words = shlex.split(str(args.decode() if isinstance(args, bytes) else args))
    else:
        words = [str(a.decode() if isinstance(a, bytes) else a) for a in args]  # type: ignore[attr-defined]
    for before, word in zip(["", *words], words, strict=False):
        if (
            Path(word).name in SERVER_PROGRAMS
            or word.endswith(SERVER_SCRIPTS)
            or (before == "-m" and word in SERVER_MODULES)
        ):
            return word
    return None


class _Guard:
    def __init__(self) -> None:
        self.in_threads: list[str] = []  # refusals raised in another thread, where the test does not see them

    def refuse(self, what: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            self.in_threads.append(what)
        raise AssertionError(f"{MOVE} ({what})")


@pytest.fixture(scope="module", autouse=True)
def _no_servers_in_this_module() -> Iterator[_Guard]:
    """Module-wide, so a module-scoped fixture that starts a server is caught too."""
    guard = _Guard()
    real_popen_init = subprocess.Popen.__init__

    def listen(self: socket.socket, *args: object) -> None:
        guard.refuse(f"a socket listens on {self.getsockname()}")

    def popen_init(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        if (word := server_named(args)) is not None:
            guard.refuse(f"a subprocess runs {word!r}")
        real_popen_init(self, args, *rest, **kwargs)

    def spawn_server(*args: object, **kwargs: object) -> None:
        guard.refuse("bench/harness.py starts a server")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "listen", listen)
        patch.setattr(subprocess.Popen, "__init__", popen_init)
        patch.setattr(harness, "spawn_server", spawn_server)
        yield guard


@pytest.fixture(autouse=True)
def _no_servers_in_this_test(_no_servers_in_this_module: _Guard) -> Iterator[None]:
    """A server started in a thread (uvicorn.Server's usual set-up) raises there, out of the test's sight: the test
    fails here instead, once it ends (a test waiting for that server to start ends at its timeout)."""
    seen = len(_no_servers_in_this_module.in_threads)
    yield
    if len(_no_servers_in_this_module.in_threads) > seen:
        pytest.fail(f"{MOVE} ({'; '.join(_no_servers_in_this_module.in_threads[seen:])})", pytrace=False)
