"""The GPU image and its documented weight-fetch commands agree on the layout.

The commands in deploy/docker/Dockerfile's header are run as written (`docker run ... --entrypoint python3 spark-tts
-m core.weights ...`, with the models volume `/models` as a temporary directory and `docker run` as this
interpreter) against a local stand-in for the hub: `python -m http.server` serving the demo checkpoint under the
hub's `<repo>/resolve/<revision>/<path>` addresses, reached through `HF_ENDPOINT` and with a `TTS_WEIGHTS_MANIFEST` of
the demo's own sizes and digests (the pinned digests are the released files'). Then the image's ENTRYPOINT starts
with the image's ENV on what was fetched, until `/v1/tts/ready`, and `curl` gets speech at 48 kHz (AP-BWE found
where TTS_SR_DIR says). Deviations forced by this machine, named: TTS_ENGINE=transformers and TTS_DEVICE=cpu (no
GPU, no vLLM here); everything else, the model and SR paths included, is the image's.
"""

from __future__ import annotations

import hashlib
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

from core.weights import APBWE_REPO, APBWE_REVISION, APBWE_SUBDIR, SPARK_REPO, SPARK_REVISION
from tests.e2e.conftest import free_port
from tests.unit.services.deployment.test_self_host import DOCKER, ROOT, env_of, instructions

pytestmark = pytest.mark.timeout(600)
DOCKER_RUN = "docker run --rm -v /path/to/models:/models --entrypoint python3 spark-tts "


def documented_fetch_commands() -> list[str]:
    lines = [
        line.lstrip("# ").strip()
        for line in (DOCKER / "Dockerfile").read_text().splitlines()
        if line.startswith("#") and "core.weights" in line
    ]
    assert len(lines) == 2 and all(line.startswith(DOCKER_RUN) for line in lines), lines
    return [line[len(DOCKER_RUN) :] for line in lines]


def _entry(path: Path, relative: str) -> dict:
    data = path.read_bytes()
    return {"path": relative, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _stand_in_hub(demo: Path, root: Path) -> dict:
    """The demo checkpoint at the hub's addresses, and the manifest of what is served."""
    spark = root / SPARK_REPO / "resolve" / SPARK_REVISION
    sr = root / APBWE_REPO / "resolve" / APBWE_REVISION / APBWE_SUBDIR
    manifest: dict[str, list] = {"spark": [], "sr": []}
    for path in sorted(p for p in demo.rglob("*") if p.is_file() and not p.name.startswith(".")):
        relative = path.relative_to(demo).as_posix()
        if relative.startswith("16kto48k/"):
            target, kind, relative = sr / path.name, "sr", path.name
        else:
            target, kind = spark / relative, "spark"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        manifest[kind].append(_entry(path, relative))
    return manifest


def test_the_documented_fetch_fills_the_paths_the_gpu_image_serves_from(
    demo_model_dir: Path, tmp_path: Path
) -> None:
    hub, models = tmp_path / "hub", tmp_path / "models"
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(json.dumps(_stand_in_hub(demo_model_dir, hub)))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=hub,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env.update({"HF_ENDPOINT": f"http://127.0.0.1:{port}", "TTS_WEIGHTS_MANIFEST": str(manifest_path)})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(env["HF_ENDPOINT"], timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        for command in documented_fetch_commands():
            argv = [
                sys.executable,
                *shlex.split(command.replace("/models", str(models))),
            ]  # python3 = this one
            result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    finally:
        server.terminate()
        server.wait(timeout=10)

    steps = instructions(DOCKER / "Dockerfile")
    image_env = {
        k: v.replace("/models", str(models)).replace("/spool", str(tmp_path / "spool"))
        for k, v in env_of(steps).items()
    }
    assert Path(image_env["TTS_MODEL_DIR"], "config.yaml").is_file()
    assert Path(image_env["TTS_SR_DIR"], "g_16kto48k").is_file()
    entry = json.loads(next(rest for word, rest in steps if word == "ENTRYPOINT"))
    assert entry == ["python3", "-m", "api.launch"]  # the one launch command (api/launch.py)
    port = free_port()
    argv = [sys.executable, *entry[1:]]
    serve_env = {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "HF_"))}
    serve_env.update(
        {
            **image_env,
            "TTS_ENGINE": "transformers",
            "TTS_DEVICE": "cpu",
            "TTS_API_KEYS": "gpu-key",
            "OMP_NUM_THREADS": "1",
            "TTS_HOST": "127.0.0.1",
            "TTS_PORT": str(port),
        }
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(argv, cwd=ROOT, env=serve_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{base}/v1/tts/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        health = httpx.get(f"{base}/v1/tts/health", timeout=5).json()
        assert health["model_loaded"] and health["sr_ready"], health
        out = tmp_path / "speech.wav"
        curl = subprocess.run(
            [
                "curl",
                "-sS",
                "-D",
                "-",
                "-X",
                "POST",
                f"{base}/v1/tts/generate",
                "-H",
                "Authorization: Bearer gpu-key",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"text": "Hello from the GPU image layout.", "output": "48khz"}',
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert " 200" in curl.stdout.splitlines()[0] and "x-sr-applied: true" in curl.stdout.lower()
        assert out.stat().st_size > 44 + 48_000
    finally:
        process.terminate()
        process.wait(timeout=30)
