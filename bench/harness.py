"""What every bench that drives a server shares: start the service on a free local port, wait until it is ready,
stop it, and write the bench's results.

Three ways to serve, all the product app on whatever checkpoint `TTS_MODEL_DIR` names:
- `app_command`: the service exactly as `uvicorn --factory api:create_app` serves it;
- `standin_command`: with stand-ins injected (`python -m bench.standin.serve`): the device cost model
  (`cost_model`, engine steps and codec calls as waits of a GPU's measured length) and/or the fault engine;
- `paced_command`: `bench/serve_paced.py`, the LLM replaced by the paced engine, with its bench-only routes.

The child gets this process's environment without any TTS_* variable, plus what the caller names, so a developer's
shell settings never leak into a measurement; the ones left out are named on stderr, so a variant set in the shell
is not mistaken for one measured. Load itself is driven by each bench (bench/loadgen.py for HTTP and WebSocket
streams, bench/ws_speakers.py for the dialect sockets).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEMO_DIR = ROOT / "var" / "test-demo-model"
COST_MODELS = ROOT / "bench" / "cost_models"
H100 = COST_MODELS / "h100-tf32.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        stop_server(self)


def app_command(port: int) -> list[str]:
    return [
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


def standin_command(
    cost_model: Path | str | None = None, fault: str = "", extra: Iterable[str] = ()
) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.standin.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(["--cost-model", str(cost_model)] if cost_model else []),
            *(["--fault", fault] if fault else []),
            *extra,
        ]

    return command


def paced_command(
    rate: float = 100.0, codec: str = "demo", flags: Iterable[str] = ()
) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "bench" / "serve_paced.py"),
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--codec",
            codec,
            *flags,
        ]

    return command


def demo_env(model_dir: Path | str = DEMO_DIR, device: str = "cpu", **settings: str) -> dict[str, str]:
    """A bench server's settings: the checkpoint, the device, no auth, unbuffered logs, plus `settings`."""
    return {
        "TTS_MODEL_DIR": str(model_dir),
        "TTS_DEVICE": device,
        "TTS_AUTH_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        **settings,
    }


def keyed_postgres_env(**settings: str) -> tuple[str, dict[str, str]]:
    """A bench server with real keys and credits in the test PostgreSQL (TTS_TEST_DATABASE_URL, migrated here):
    its DSN and settings on the demo checkpoint, quiet logs, plus `settings`. Exits with a hint when unset."""
    dsn = os.environ.get("TTS_TEST_DATABASE_URL")
    if not dsn:
        sys.exit("TTS_TEST_DATABASE_URL is not set (export $(scripts/start_services))")
    from core.demo.checkpoint import build_demo_checkpoint
    from services.usage.migrations import apply_migrations

    asyncio.run(apply_migrations(dsn))
    model_dir = build_demo_checkpoint(ROOT / "var" / "test-demo-model", seed=0)
    env = demo_env(
        model_dir,
        TTS_AUTH_ENABLED="true",
        TTS_KEY_BACKEND="postgres",
        TTS_DATABASE_URL=dsn,
        TTS_CREDITS_ENABLED="true",
        TTS_LOG_LEVEL="WARNING",
        OMP_NUM_THREADS="1",
        **settings,
    )
    return dsn, env


def spawn_server(command: Callable[[int], list[str]], env: dict[str, str], log: Path) -> Server:
    """Start `command(port)` from the repository root with its output in `log`; do not wait (see wait_ready)."""
    port = free_port()
    # The bench's own settings only: a TTS_ variable of the caller's shell would change what is measured unseen.
    dropped = sorted(k for k in os.environ if k.startswith("TTS_") and k not in env)
    if dropped:
        print(
            f"start_server: not passed to the server (the bench sets its own TTS_ settings): {', '.join(dropped)}",
            file=sys.stderr,
        )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    child_env.update(env)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command(port), cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT
        )
    return Server(f"http://127.0.0.1:{port}", process, log)


FAILED_STATES = ("failed", "warmup_failed")  # readiness states a server never leaves by itself
POLL_S = 0.3


def failure_from_log(text: str, lines: int = 40) -> str:
    """The cause in a server's log: its one-line MISSING PACKAGE notice and the last traceback (a JSON log's `exc`
    field, or a plain log's `Traceback ...` block), else the log's last lines."""
    notices, traceback = [], ""
    for line in text.splitlines():
        if "MISSING PACKAGE" in line:
            try:
                notices.append(str(json.loads(line).get("message", line)))
            except (ValueError, AttributeError):
                notices.append(line.strip())
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("exc"):
            traceback = str(record["exc"])
    if not traceback and "Traceback (most recent call last)" in text:
        traceback = text[text.rindex("Traceback (most recent call last)") :]
    cause = traceback or "\n".join(text.splitlines()[-lines:])
    cause = "\n".join(cause.splitlines()[-lines:])
    return "\n".join([*dict.fromkeys(notices), cause]).strip()


def readiness(server: Server) -> tuple[bool, str | None]:
    """(ready, why it never will be: it exited, or its readiness says a failed state; None while it may still)."""
    code = server.process.poll()
    if code is not None:
        return False, f"server exited with code {code}"
    try:
        answer = httpx.get(f"{server.url}/v1/tts/ready", timeout=2)
        body = answer.json()
    except (httpx.HTTPError, ValueError):
        return False, None
    if answer.status_code == 200:
        return True, None
    state = body.get("state") if isinstance(body, dict) else None
    if state in FAILED_STATES:
        return False, f"server reports {state}: {body.get('error')}"
    return False, None


def wait_ready(servers: list[Server], timeout_s: float = 300.0) -> None:
    """Block until every server answers /v1/tts/ready with 200 (models loaded, warm-up done). Raises, with the cause
    from the server's log (also printed on stderr), as soon as one exits or reports a failed start (`failed`,
    `warmup_failed`): a wait ends within a poll of the failure, never at its deadline. Raises with the log's tail
    when one is not ready in time."""
    deadline = time.monotonic() + timeout_s
    pending = list(servers)
    while pending:
        for server in list(pending):
            ready, reason = readiness(server)
            if ready:
                pending.remove(server)
            elif reason is not None:
                cause = failure_from_log(server.log_path.read_text(errors="replace"))
                print(f"{reason}; from its log:\n{cause}", file=sys.stderr, flush=True)
                raise RuntimeError(f"{reason}; from its log ({server.log_path}):\n{cause}")
        if pending and time.monotonic() > deadline:
            raise RuntimeError(
                f"server not ready in {timeout_s:.0f} s:\n"
                f"{pending[0].log_path.read_text(errors='replace')[-3000:]}"
            )
        if pending:
            time.sleep(POLL_S)


def start_server(
    command: Callable[[int], list[str]], env: dict[str, str], log: Path, ready_s: float = 300.0
) -> Server:
    """`spawn_server`, then `wait_ready`; stopped again if it does not get ready."""
    server = spawn_server(command, env, log)
    try:
        wait_ready([server], ready_s)
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)


def results_path(folder: str, name: str) -> Path:
    """bench/results/FOLDER/NAME: a folder per measurement, holding its latest run."""
    path = RESULTS / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def repo_path(path: Path) -> str:
    """A path as results files show it: relative to the repository when it is inside it, else its name (no machine
    paths in committed results)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def write_results(path: Path, result: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path
