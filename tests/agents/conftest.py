"""The voice-agent tier: the frameworks' own clients (Pipecat, LiveKit Agents) in `.venv-agents` against a real
server on loopback. The server runs in the project's venv (torch, the demo checkpoint); this venv has only the
frameworks, so the server is a subprocess started with `TTS_TEST_SERVER_PYTHON` (default: the project's .venv).

Three servers, all the real app on the demo checkpoint:
- `server`: with the device stand-in (`python -m bench.standin.serve --cost-model
  bench/cost_models/h100-tf32.json`: the engine's steps and the codec's calls are waits of an H100's measured
  length, the audio is noise). The conversations with
  barge-ins run on it: what their timing bound is about is the server's wiring (sessions, contexts, stops, pacing,
  encoders), and the demo model's own speed on a shared CPU (first audio 3-10 s) would drown it. Run-ahead pacing
  (TTS_STREAM_MAX_AHEAD_S) is what holds an interrupted reply here, as on a GPU. Admission is on with its default
  settings, as on a GPU: the conversations check that no turn was refused (`check_no_refusals`). Its miss rule reads
  the device's lateness less the event loop's stalls (services/device/loop_lag.py), so a busy CI host does not read
  as a full device.
- `credits_server`: the same, with credits charged (the out-of-credits turns).
- `model_server`: the demo model itself (torch on the CPU): the HTTP timestamps test, so that the tier also
  speaks through the real model, codec and aligner (slow, so no timing is asserted on it). Admission is left to
  `auto`, which is off on a CPU: the demo model on a shared CPU runs slower than real time, which admission would
  rightly refuse."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "agents-test-key"
COST_MODEL = ROOT / "bench" / "cost_models" / "h100-tf32.json"


@dataclass
class Server:
    http: str  # http://127.0.0.1:PORT
    ws: str  # ws://127.0.0.1:PORT
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def mark(self) -> int:
        """Where the log ends once it has been still for a second (an earlier test's connection may still be
        logging its end): `events(mark)` reads only what came after."""
        size, still_since, deadline = self.log.stat().st_size, time.monotonic(), time.monotonic() + 15
        while time.monotonic() - still_since < 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.log.stat().st_size
            if now != size:
                size, still_since = now, time.monotonic()
        return size

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

    def admission_refusals(self) -> float:
        """`admission_refusals_total` from /metrics, every rule and key class together."""
        with urllib.request.urlopen(f"{self.http}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return sum(float(m.group(1)) for m in _REFUSALS.finditer(text))


_REFUSALS = re.compile(r"^\w+_admission_refusals_total\{[^}]*\} (\S+)$", re.MULTILINE)


def check_no_refusals(server: Server, mark: int, refusals_before: float) -> None:
    """No turn since `mark` was refused by admission: the metric did not move and the log has no `admission_refused`
    (each refusal is logged with its rule: the two must agree)."""
    logged = server.events(mark, "admission_refused")
    counted = server.admission_refusals() - refusals_before
    assert all(e.get("rule") for e in logged), logged
    assert counted == len(logged) == 0, (counted, [(e["rule"], e["reason"]) for e in logged])


def _python() -> str:
    return os.environ.get("TTS_TEST_SERVER_PYTHON") or str(ROOT / ".venv" / "bin" / "python")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    extra_env: dict[str, str],
    standin: list[str] | None = None,
) -> Generator[Server, None, None]:
    model_dir = (
        subprocess.run(
            [
                _python(),
                "-c",
                "from core.demo.checkpoint import build_demo_checkpoint; from pathlib import Path; "
                "print(build_demo_checkpoint(Path('var/test-demo-model'), seed=0))",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = _free_port()
    log = tmp_path_factory.mktemp(name) / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env.update(
        {
            "TTS_MODEL_DIR": model_dir,
            "TTS_DEVICE": "cpu",
            "TTS_AUTH_ENABLED": "true",
            "TTS_API_KEYS": KEY,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            **extra_env,
        }
    )
    with open(log, "wb") as out:
        # The plain app, or with stand-ins injected (bench/standin/serve.py)
        command = (
            ["-m", "api.launch"]  # the one launch command scripts/serve and the images run
            if standin is None
            else ["-m", "bench.standin.serve", *standin]
        )
        process = subprocess.Popen(
            [_python(), *command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
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


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, "standin", {"TTS_ADMISSION": "on"}, ["--cost-model", str(COST_MODEL)])


BROKE_KEY = "agents-broke-key"  # on `credits_server`: a key with no credits left


@pytest.fixture(scope="session")
def credits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The stand-in server with credits charged: `BROKE_KEY` has a balance of 0, so every turn is refused as out of
    credits (`KEY` is unlimited)."""
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    keys.write_text(
        json.dumps(
            [
                {
                    "key_id": "broke",
                    "key_hash": hashlib.sha256(BROKE_KEY.encode()).hexdigest(),
                    "credit_balance": 0,
                }
            ]
        )
    )
    yield from _serve(
        tmp_path_factory,
        "credits",
        {"TTS_ADMISSION": "on", "TTS_CREDITS_ENABLED": "true", "TTS_API_KEYS_FILE": str(keys)},
        ["--cost-model", str(COST_MODEL)],
    )


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, "model", {})


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


# The next turn after a barge-in starts as fast as a fresh turn on the same server: the bound, on the
# stand-in server. Medians on both sides (several fresh turns on an idle socket, every turn after a barge-in), so
# one turn that a busy host delays does not decide. (A server that keeps generating interrupted turns fails the
# stop checks beside it: on the stand-in an interrupted reply is still generating, paced, when the next turn opens.)
RATIO, MARGIN_MS = 1.3, 100.0


def check_next_turns(fresh: list[float], after: list[float]) -> None:
    """First audio (ms, server side from the context's first message) of the fresh turns and of the turns after a
    barge-in: median(after) <= 1.3 x median(fresh) + 100 ms."""
    print("first audio ms, fresh:", fresh, "after barge-ins:", after)
    assert len(fresh) >= 3 and after, (fresh, after)
    assert statistics.median(after) <= RATIO * statistics.median(fresh) + MARGIN_MS, (fresh, after)
