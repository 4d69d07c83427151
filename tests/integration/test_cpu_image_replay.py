"""The CPU image, built without Docker (no Docker engine runs here or in CI): every instruction of
deploy/docker/Dockerfile.cpu replayed in order into a fresh virtualenv and a fresh application directory.

WORKDIR becomes a temporary directory, COPY copies from the repository, RUN runs with the virtualenv's python and the
ENV set so far, and the ENTRYPOINT is started with the image's ENV until `/v1/tts/ready` answers, then `curl -N`
streams speech from it. Two deviations, both forced by this sandbox and named here: the torch wheel comes from the
machine's pip configuration instead of download.pytorch.org (not reachable), and `--no-cache-dir` is dropped so pip's
cache serves the packages the project's own install already downloaded. The interpreter is this machine's python3
(the image uses python:3.12-slim; pyproject admits >= 3.11).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port
from tests.unit.services.deployment.test_self_host import DOCKER, ROOT, env_of, instructions

pytestmark = pytest.mark.timeout(1200)


def replay_command(argv: list[str], venv_python: Path) -> list[str]:
    """A RUN line's argv with the image's `python` as the virtualenv's, and the two sandbox deviations."""
    assert argv[0] == "python", f"RUN lines start with python: {argv}"
    out = [str(venv_python)]
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--index-url":
            skip = (
                True  # download.pytorch.org is not reachable here; the local pip configuration serves torch
            )
            continue
        if arg == "--no-cache-dir":
            continue
        out.append(arg)
    return out


def test_the_cpu_image_installs_and_serves_from_a_fresh_virtualenv(tmp_path: Path) -> None:
    steps = instructions(DOCKER / "Dockerfile.cpu")
    app_dir = tmp_path / "app"
    venv = tmp_path / "venv"
    subprocess.run(
        [shutil.which("python3") or sys.executable, "-m", "venv", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    image_root = "/app"
    entry: list[str] = []
    command: list[str] = []
    for word, rest in steps:
        rest = rest.replace(image_root, str(app_dir))
        if word == "WORKDIR":
            assert rest == str(app_dir)
            app_dir.mkdir(parents=True)
        elif word == "COPY":
            *sources, dest = shlex.split(rest)
            target = app_dir / dest
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, target / path.name)
        elif word == "RUN":
            result = subprocess.run(
                replay_command(shlex.split(rest), python),
                cwd=app_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert result.returncode == 0, (
                f"RUN {rest} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        elif word == "ENV":
            env.update(env_of([(word, rest)]))
        elif word == "ENTRYPOINT":
            entry = json.loads(rest)
        elif word == "CMD":
            command = json.loads(rest)
    # The installed package is the image's copy, not this repository (a non-editable install into the venv).
    where = subprocess.run(
        [str(python), "-c", "import api, core.clone; print(api.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert str(venv) in where, where

    port = free_port()
    command = entry + replay_command(command, python)  # the entry point wraps the server command
    assert command[-2:] == ["-m", "api.launch"], command  # the one launch command (api/launch.py)
    env = {**env, "TTS_HOST": "127.0.0.1", "TTS_PORT": str(port)}
    log = tmp_path / "server.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, cwd=app_dir, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, f"the entry point exited:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{base}/v1/tts/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in time:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        out = tmp_path / "hello.wav"
        subprocess.run(
            [
                "curl",
                "-sS",
                "-N",
                "-f",
                "-X",
                "POST",
                f"{base}/v1/tts/generate",
                "-H",
                "Content-Type: application/json",
                "-d",
                json.dumps({"text": "Hello from the image.", "stream": True}),
                "-o",
                str(out),
            ],
            check=True,
            timeout=120,
        )
        audio = out.read_bytes()
        assert audio[:4] == b"RIFF" and len(audio) > 44 + 3200
        assert httpx.get(f"{base}/playground", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
