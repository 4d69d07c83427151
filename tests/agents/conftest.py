"""The voice-agent tier: the frameworks' own clients (Pipecat, LiveKit Agents) in `.venv-agents` against a real
server on loopback. The server runs in the project's venv (torch, the demo checkpoint); this venv has only the
frameworks, so the server is a subprocess started with `TTS_TEST_SERVER_PYTHON` (default: the project's .venv)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "agents-test-key"


@dataclass
class Server:
    http: str  # http://127.0.0.1:PORT
    ws: str  # ws://127.0.0.1:PORT
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def mark(self) -> int:
        """Where the log ends now: `events(mark)` reads only what came after."""
        return self.log.stat().st_size

    def events(self, since: int, name: str) -> list[dict]:
        """The server's JSON log lines with `event == name` written after `since`, in order."""
        with open(self.log, "rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        out = []
        for line in lines:
            if f'"{name}"' in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == name:
                    out.append(record)
        return out


def _python() -> str:
    return os.environ.get("TTS_TEST_SERVER_PYTHON") or str(ROOT / ".venv" / "bin" / "python")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model_dir = subprocess.run(
        [_python(), "-c", "from core.demo.checkpoint import build_demo_checkpoint; from pathlib import Path; "
         "print(build_demo_checkpoint(Path('var/test-demo-model'), seed=0))"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = _free_port()
    log = tmp_path_factory.mktemp("agents") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env.update({"TTS_MODEL_DIR": model_dir, "TTS_DEVICE": "cpu", "TTS_AUTH_ENABLED": "true",
                "TTS_API_KEYS": KEY, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    with open(log, "wb") as out:
        process = subprocess.Popen([_python(), "-m", "uvicorn", "--factory", "api:create_app", "--host", "127.0.0.1",
                                    "--port", str(port), "--no-access-log"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/tts/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def llm_tokens(text: str) -> list[str]:
    """Text the way an LLM streams it: a word (with its leading space) at a time, punctuation split off."""
    out: list[str] = []
    for index, word in enumerate(text.split(" ")):
        piece = word if index == 0 else " " + word
        if piece and piece[-1] in ".,?!":
            out += [piece[:-1], piece[-1]]
        else:
            out.append(piece)
    return out


# The next turn's first audio against a fresh turn's: the bound (1.3x) where timings mean something (a
# dedicated machine: TTS_AGENTS_STRICT_TIMING=1); on a shared CPU host a looser one that still catches a server that
# keeps generating interrupted turns (their first audio then grows turn after turn).
STRICT_TIMING = os.environ.get("TTS_AGENTS_STRICT_TIMING") == "1"
RATIO, MARGIN_MS = (1.3, 100.0) if STRICT_TIMING else (2.0, 1500.0)
