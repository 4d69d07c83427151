"""Health and readiness answer while the models load, under a real uvicorn server (as Docker runs it).

The engine build is held at a gate the test opens: a vLLM build takes seconds on CPU and minutes on a GPU, and it
used to run on the event loop, so /v1/tts/health stalled (no answer) until it finished. vLLM cannot run in this
environment, so the launcher replaces the engine builder (the boundary) with one that waits for the gate and then
builds the transformers engine; everything else is the service as deployed, answering curl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

LAUNCHER = r"""
import os, pathlib, sys, time
import uvicorn
import core.llm

build = core.llm.create_engine
entered, gate = pathlib.Path(os.environ["GATE_ENTERED"]), pathlib.Path(os.environ["GATE_OPEN"])

def slow_build(kind, llm_dir, settings):
    entered.touch()
    while not gate.exists():  # blocks whichever thread builds the engine
        time.sleep(0.05)
    return build("transformers", llm_dir, settings)

core.llm.create_engine = slow_build
uvicorn.run("api:create_app", factory=True, host="127.0.0.1", port=int(sys.argv[1]), access_log=False)
"""


def curl(url: str) -> tuple[int, dict]:
    """GET with curl; a server whose event loop is blocked gives no answer within 10 s (status 0)."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), (json.loads(body) if body.strip().startswith("{") else {})


def wait_for(predicate, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.1)


def test_health_answers_while_the_engine_is_still_being_built(demo_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    entered, gate = tmp_path / "entered", tmp_path / "open"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_") or k.startswith("TTS_TEST_")}
    env.update(
        {
            "TTS_MODEL_DIR": str(demo_model_dir),
            "TTS_ENGINE": "vllm",
            "TTS_DEVICE": "cpu",
            "TTS_AUTH_ENABLED": "false",
            "TTS_WARMUP": "false",
            "TTS_SR_ENABLED": "false",
            "GATE_ENTERED": str(entered),
            "GATE_OPEN": str(gate),
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: entered.exists() or server.poll() is not None, "the engine build")
        assert server.poll() is None, (tmp_path / "server.log").read_text(errors="replace")[-3000:]
        # The build is held: every answer below comes while the models are still loading.
        for _ in range(3):
            status, health = curl(f"{base}/v1/tts/health")
            assert status == 200, "no answer from /v1/tts/health while the engine was being built"
            assert health["state"] == "loading" and health["model_loaded"] is False
            assert health["demo_model"] is True  # what is loading, not a false "not the demo"
            status, ready = curl(f"{base}/v1/tts/ready")
            assert (status, ready["ready"], ready["state"]) == (503, False, "loading")
        gate.touch()
        wait_for(lambda: curl(f"{base}/v1/tts/ready")[0] == 200, "readiness after the build")
        status, health = curl(f"{base}/v1/tts/health")
        assert status == 200 and health["state"] == "ready" and health["model_loaded"] is True
    finally:
        gate.touch()  # never leave the build blocked
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
