"""The self-hosting files, as far as they can be checked without Docker: Dockerfiles, compose file, Prometheus
config and the one source of the image pins. The CPU image itself is built and served from a fresh virtualenv by
tests/integration/test_cpu_image_replay.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import app as modal_app
from services.deployment import image_pins
from shared.settings import FIELDS

ROOT = Path(__file__).resolve().parents[4]
DOCKER = ROOT / "deploy" / "docker"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def env_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in steps:
        if word == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return env


def project_packages() -> set[str]:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    return {p.rstrip("*") for p in include}


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cpu"])
def test_dockerfiles_copy_the_project_and_serve_it_with_a_readiness_check(name: str) -> None:
    steps = instructions(DOCKER / name)
    copied = {rest.split()[0] for word, rest in steps if word == "COPY"}
    for source in copied:
        assert (ROOT / source).exists(), f"{name} copies {source}, which does not exist"
    assert project_packages() <= copied
    entry = json.loads(next(rest for word, rest in steps if word == "ENTRYPOINT"))
    entry += next((json.loads(rest) for word, rest in steps if word == "CMD"), [])  # a wrapper's command
    assert entry[-2:] == ["-m", "api.launch"], entry  # the one launch command (tests/unit/api/test_launch.py)
    health = next(rest for word, rest in steps if word == "HEALTHCHECK")
    assert "/v1/tts/ready" in health
    for key in env_of(steps):
        if key.startswith("TTS_"):
            assert key[4:].lower() in FIELDS, f"{name} sets unknown setting {key}"


def test_the_gpu_image_builds_on_the_pinned_vllm_image_and_keeps_models_and_spool_in_volumes() -> None:
    steps = instructions(DOCKER / "Dockerfile")
    default_image = next(rest for word, rest in steps if word == "ARG" and rest.startswith("VLLM_IMAGE="))
    assert default_image == f"VLLM_IMAGE={image_pins.VLLM_DOCKER_IMAGE}"
    assert 'VOLUME ["/models", "/spool"]' in {f"{w} {r}" for w, r in steps}
    env = env_of(steps)
    assert env["TTS_MODEL_DIR"].startswith("/models/") and env["TTS_REQUEST_LOG_SPOOL_DIR"] == "/spool"
    assert env["TTS_ENGINE"] == "vllm"
    run = " ".join(rest for word, rest in steps if word == "RUN")
    assert "image_pins.py --without vllm,torch" in run  # the same pins as the Modal image


def test_one_source_of_pins_for_the_modal_and_docker_images() -> None:
    assert modal_app.IMAGE_PACKAGES is image_pins.IMAGE_PACKAGES
    assert modal_app.PYTHON_VERSION == image_pins.PYTHON_VERSION
    printed = subprocess.run(
        [sys.executable, str(ROOT / "services" / "deployment" / "image_pins.py"), "--without", "vllm,torch"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert printed == [p for p in image_pins.IMAGE_PACKAGES if not p.startswith(("vllm==", "torch=="))]


def test_the_cpu_image_torch_pin_matches_the_local_setup() -> None:
    venv_script = (ROOT / "scripts" / "_venv.sh").read_text()
    local = re.search(r'TORCH_SPEC="\$\{TTS_TORCH_SPEC:-(torch==[0-9.]+)\}"', venv_script).group(1)
    assert f'"{local}"' in (DOCKER / "Dockerfile.cpu").read_text()


def test_the_compose_stack_wires_service_redis_postgres_prometheus_and_grafana(tmp_path: Path) -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"tts", "redis", "postgres", "prometheus", "pushgateway", "grafana"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") and "${" not in source and "models-unused" not in source:
                assert (DOCKER / source).resolve().exists(), f"{name} mounts {source}, which does not exist"
    tts = services["tts"]
    assert (ROOT / tts["build"]["dockerfile"].split(":-")[-1].rstrip("}")).is_file()
    for key in tts["environment"]:
        assert key[4:].lower() in FIELDS, f"compose sets unknown setting {key}"
    assert {"redis", "postgres"} <= set(tts["depends_on"])
    migrations = next(v for v in services["postgres"]["volumes"] if "initdb" in v).split(":")[0]
    assert sorted(p.name for p in (DOCKER / migrations).glob("*.sql"))[0].startswith("001_")
    # The Prometheus config is valid once its rule path points where compose mounts the alerts.
    config = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in config
    local = tmp_path / "prometheus.yml"
    local.write_text(
        config.replace("/etc/prometheus/alerts.yml", str(ROOT / "deploy" / "prometheus" / "alerts.yml"))
    )
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian prometheus) is installed by scripts/test"
    subprocess.run([promtool, "check", "config", str(local)], check=True, capture_output=True)


def _cpu_entrypoint_auth(**env: str) -> str | None:
    """TTS_AUTH_ENABLED as the CPU image's entry point hands it to the server, under the image's ENV plus `env`."""
    steps = instructions(DOCKER / "Dockerfile.cpu")
    base = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    done = subprocess.run(
        [
            "sh",
            str(DOCKER / "cpu-entrypoint.sh"),
            sys.executable,
            "-c",
            "import os; print(os.environ.get('TTS_AUTH_ENABLED', '<unset>'))",
        ],
        env={**base, **env_of(steps), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    value = done.stdout.strip().splitlines()[-1]
    return None if value == "<unset>" else value


def test_the_cpu_image_turns_auth_on_when_keys_are_given() -> None:
    steps = instructions(DOCKER / "Dockerfile.cpu")
    assert "TTS_AUTH_ENABLED" not in env_of(
        steps
    )  # the entry point decides, so a key given at `docker run` counts
    assert json.loads(next(rest for word, rest in steps if word == "ENTRYPOINT")) == [
        "sh",
        "/app/cpu-entrypoint.sh",
    ]
    assert _cpu_entrypoint_auth() == "false"  # the built-in demo, no key: off (published on loopback only)
    assert _cpu_entrypoint_auth(TTS_API_KEYS="k1") is None  # on: the setting's default
    assert _cpu_entrypoint_auth(TTS_API_KEYS_FILE="/keys.json") is None
    assert _cpu_entrypoint_auth(TTS_KEY_BACKEND="postgres") is None
    assert (
        _cpu_entrypoint_auth(TTS_MODEL_DIR="/models/spark") is None
    )  # a real model: on (warns without keys)
    assert _cpu_entrypoint_auth(TTS_AUTH_ENABLED="true") == "true"


def test_the_compose_comments_name_the_migrations_there_are() -> None:
    migrations = sorted(p.name[:3] for p in (ROOT / "deploy" / "sql").glob("*.sql"))
    text = (DOCKER / "compose.yaml").read_text()
    ranges = re.findall(r"\b(\d{3})\.\.(\d{3})\b", text)
    assert ranges, "compose.yaml names the migrations it applies"
    for first, last in ranges:
        assert (first, last) == (migrations[0], migrations[-1]), (
            f"compose.yaml says {first}..{last}; deploy/sql has {migrations[0]}..{migrations[-1]}"
        )
