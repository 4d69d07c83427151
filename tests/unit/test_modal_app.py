"""The Modal wiring (app.py) and the GPU fault detector (services/pipeline/gpu_faults.py).

No Modal token, no network: Modal objects are lazy until deploy, so importing app.py and reading what it
declares is enough to catch a wrong knob, a deprecated parameter or an image pin that cannot resolve with vLLM.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

import app as modal_app
from core.weights import ExpectedFile
from services.deployment import modal_deployment as deployment
from services.pipeline import gpu_faults
from services.pipeline.gpu_faults import (
    GPU_FAULT,
    GPU_OOM,
    FaultKind,
    GpuFaultDetector,
    OomPolicy,
    classify_gpu_error,
)
from shared import metrics

ROOT = Path(__file__).resolve().parents[2]

# vLLM 0.33.0's published requirements (docs/reference/modal-vllm.md#packaging, from its PyPI metadata).
VLLM_033_PYTHON = SpecifierSet(">=3.11,<3.15")
VLLM_033_REQUIRES = {
    "torch": SpecifierSet("==2.14.0"),
    "fastapi": SpecifierSet(">=0.133.0,<0.137.0"),
    "transformers": SpecifierSet(">=5.16.1,<5.21.0"),
    "huggingface-hub": SpecifierSet(">=1.31.0"),
    "pydantic": SpecifierSet(">=2.12"),
}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "TTS_"))}
    env.update(extra)
    return env


def _import_app_in_subprocess(tmp_path: Path, **extra_env: str) -> dict:
    """Import app.py in a fresh interpreter: no Modal token, HOME without a ~/.modal.toml."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    probe = r"""
import json, sys, modal
import app
spec = {k: v for k, v in app.CLS_OPTIONS.items() if k not in ("image", "secrets", "volumes")}
print(json.dumps({
    "is_cls": isinstance(app.TTSService, modal.Cls),
    "app_name": app.app.name,
    "options": spec,
    "volumes": sorted(app.CLS_OPTIONS["volumes"]),
    "n_secrets": len(app.CLS_OPTIONS["secrets"]),
    "concurrency": app.CONCURRENCY,
    "heavy_imports": sorted(m for m in ("torch", "vllm", "transformers", "shared", "api") if m in sys.modules),
}))
"""
    env = _clean_env(HOME=str(home), **extra_env)
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ app.py


def test_import_needs_no_token_and_declares_production_defaults(tmp_path: Path) -> None:
    facts = _import_app_in_subprocess(tmp_path)
    assert facts["is_cls"]
    assert facts["app_name"] == "veena3-tts"
    assert facts["heavy_imports"] == []  # the download image has no torch: app.py must not need it
    opts = facts["options"]
    assert opts["gpu"] == "H200"  # the card the fleet's sizing and admission's carried streams are stated for
    assert opts["cpu"] == 4.0
    assert (opts["min_containers"], opts["max_containers"], opts["buffer_containers"]) == (1, 10, 2)
    assert opts["scaledown_window"] == 180
    # One input = one stream or WebSocket session (docs/reference/modal-vllm.md#decorators).
    assert opts["timeout"] == 3600
    assert opts["startup_timeout"] >= 600  # first boot compiles vLLM graphs
    assert opts["enable_memory_snapshot"] is False
    assert opts["experimental_options"] is None
    assert facts["volumes"] == ["/jobs", "/models", "/spool"]
    assert facts["n_secrets"] == 1
    # One container can take the per-GPU goal (250 streams open at once in a burst; admission, not the cap, decides
    # what one GPU carries); the autoscaler aims above the ~100 streams a GPU plays at steady load
    # (services/deployment/fleet.py).
    assert facts["concurrency"] == {"max_inputs": 256, "target_inputs": 128}
    assert facts["concurrency"]["max_inputs"] >= 250
    # The container re-imports app.py: it must see the same knobs.
    assert opts["env"]["TTS_MODAL_MAX_INPUTS"] == "256"
    assert opts["env"]["TTS_MODAL_SNAPSHOT"] == "off"


def test_knobs_come_from_the_environment_at_deploy_time(tmp_path: Path) -> None:
    facts = _import_app_in_subprocess(
        tmp_path,
        TTS_MODAL_APP_NAME="tts-staging",
        TTS_MODAL_GPU="H100,A100-80GB",
        TTS_MODAL_MIN_CONTAINERS="0",
        TTS_MODAL_MAX_INPUTS="20",
        TTS_MODAL_TARGET_INPUTS="16",
        TTS_MODAL_SECRETS="",
        TTS_MODAL_VLLM_CACHE_VOLUME="vllm-cache",
    )
    assert facts["app_name"] == "tts-staging"
    assert facts["options"]["gpu"] == ["H100", "A100-80GB"]
    assert facts["options"]["min_containers"] == 0
    assert facts["concurrency"] == {"max_inputs": 20, "target_inputs": 16}
    assert facts["n_secrets"] == 0
    assert facts["volumes"] == ["/jobs", "/models", "/root/.cache/vllm", "/spool"]


@pytest.mark.parametrize("mode", ["cpu", "gpu"])
def test_memory_snapshot_modes_pass_modals_own_checks(tmp_path: Path, mode: str) -> None:
    # Modal raises at decoration time if an enter(snap=True) exists without enable_memory_snapshot.
    facts = _import_app_in_subprocess(tmp_path, TTS_MODAL_SNAPSHOT=mode)
    assert facts["options"]["enable_memory_snapshot"] is True
    expected = {"enable_gpu_snapshot": True} if mode == "gpu" else None
    assert facts["options"]["experimental_options"] == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TTS_MODAL_MIN_CONTAINERS": "5", "TTS_MODAL_MAX_CONTAINERS": "2"},
            "exceeds TTS_MODAL_MAX_CONTAINERS",
        ),
        ({"TTS_MODAL_TARGET_INPUTS": "300"}, "exceeds TTS_MODAL_MAX_INPUTS"),
        ({"TTS_MODAL_SCALEDOWN_WINDOW": "1"}, "TTS_MODAL_SCALEDOWN_WINDOW=1 is out of range"),
        ({"TTS_MODAL_TIMEOUT": "two minutes"}, "is not an integer"),
        ({"TTS_MODAL_SNAPSHOT": "always"}, "accepted: off, cpu, gpu"),
        ({"TTS_MODAL_MODEL_SUBDIR": "../etc"}, "relative path inside the volume"),
    ],
)
def test_bad_knobs_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(deployment.DeploymentConfigError, match=message):
        modal_app.ModalConfig.from_env(env)


def test_config_round_trips_through_the_container_env() -> None:
    cfg = modal_app.ModalConfig.from_env({"TTS_MODAL_GPU": "H100", "TTS_MODAL_REGION": "us-east, eu"})
    assert modal_app.ModalConfig.from_env(cfg.as_env()) == cfg
    assert cfg.region == ("us-east", "eu")
    assert modal_app.ModalConfig.from_env({}) == modal_app.ModalConfig()


# --------------------------------------------------------------------------------- image pins vs vLLM 0.33


def _image_pins() -> dict[str, Requirement]:
    pins = {}
    for line in modal_app.IMAGE_PACKAGES:
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{line}: the image pins exact versions"
        pins[canonicalize_name(req.name)] = req
    return pins


def _pinned_version(req: Requirement) -> Version:
    return Version(next(iter(req.specifier)).version)


def test_image_pins_satisfy_vllm_033_requirements() -> None:
    pins = _image_pins()
    assert _pinned_version(pins["vllm"]) == Version("0.33.0")
    assert Version(modal_app.PYTHON_VERSION + ".0") in VLLM_033_PYTHON
    for name, allowed in VLLM_033_REQUIRES.items():
        assert name in pins, f"{name} must be pinned in the image"
        version = _pinned_version(pins[name])
        assert version in allowed, f"{name}=={version} is outside vLLM 0.33's {allowed}"
    assert "standard" in pins["fastapi"].extras


def test_pyproject_ranges_admit_the_image_pins_and_the_image_has_every_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [Requirement(d) for d in project["dependencies"] + project["optional-dependencies"]["gpu"]]
    pins = _image_pins()
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a runtime dependency but is not installed in the Modal image"
        version = _pinned_version(pins[name])
        assert req.specifier.contains(version, prereleases=True), (
            f"pyproject {req} rejects the image's {version}"
        )
    assert Version(modal_app.PYTHON_VERSION + ".0") in SpecifierSet(project["requires-python"])


def test_image_ships_every_project_package() -> None:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "packages"
    ]
    packages = {p.rstrip("*") for p in include["find"]["include"]}
    assert set(modal_app.LOCAL_PACKAGES) == packages
    for name in modal_app.LOCAL_PACKAGES:
        assert (ROOT / name / "__init__.py").is_file(), name


def _image_files(image: object) -> set[str]:
    """The container paths of every local file an image definition adds, as Modal itself selects them (its mount
    entries' own file walk, offline; Modal is pinned, so its lazy object graph is a stable thing to read)."""
    found: set[str] = set()
    stack, seen = [image], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for entry in getattr(node, "entries", ()):
            found.update(str(remote) for _local, remote in entry.get_files_to_upload())
        deps = getattr(node, "_deps_", None)
        stack.extend(deps() if callable(deps) else ())
    return found


def test_the_image_ships_every_file_of_the_packages_the_static_files_included() -> None:
    """api/static/ (the playground) is read at run time: without it / and /playground answer 500 on Modal."""
    shipped = _image_files(modal_app.serving_image)
    static = [p for p in (ROOT / "api" / "static").rglob("*") if p.is_file()]
    assert static, "api/static/ holds the playground"
    expected = {
        f"/root/{p.relative_to(ROOT).as_posix()}"
        for name in modal_app.LOCAL_PACKAGES
        for p in (ROOT / name).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert {f"/root/{p.relative_to(ROOT).as_posix()}" for p in static} <= expected
    missing = sorted(expected - shipped)
    assert not missing, f"not in the Modal image: {missing[:5]}"
    assert not [p for p in shipped if p.endswith(".pyc")]


# ------------------------------------------------------------------------------------- container settings


def ONE_CONTAINER(**knobs: object) -> modal_app.ModalConfig:  # noqa: N802 - reads as the config it builds
    """A one-container deployment: nothing forks, so these tests read the other checks alone (the fleet's own:
    tests/unit/services/deployment/test_fleet.py)."""
    return modal_app.ModalConfig(**{"max_containers": 1, "min_containers": 1, **knobs})  # type: ignore[arg-type]


@pytest.fixture
def clean_tts_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("TTS_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_container_settings_point_at_the_volume_and_vllm(clean_tts_env: pytest.MonkeyPatch) -> None:
    clean_tts_env.setenv("TTS_API_KEYS", "k1")
    settings = deployment.container_settings(ONE_CONTAINER())
    assert str(settings.model.model_dir) == "/models/Spark-TTS-0.5B"
    assert str(settings.model.sr_dir) == "/models/ap_bwe/16kto48k"
    assert (settings.llm.engine, settings.model.device) == ("vllm", "cuda")
    assert str(settings.jobs.jobs_dir) == "/jobs"  # the jobs Volume: a replacement container resumes from it
    assert settings.access.auth_enabled


def test_container_settings_let_explicit_tts_variables_win(clean_tts_env: pytest.MonkeyPatch) -> None:
    clean_tts_env.setenv("TTS_API_KEYS", "k1")
    clean_tts_env.setenv("TTS_ENGINE", "transformers")
    clean_tts_env.setenv("TTS_MODEL_DIR", "/tmp/demo")
    settings = deployment.container_settings(ONE_CONTAINER())
    assert settings.llm.engine == "transformers"
    assert str(settings.model.model_dir) == "/tmp/demo"
    assert settings.model.device == "cuda"


def test_auth_cannot_be_switched_off_on_modal(clean_tts_env: pytest.MonkeyPatch) -> None:
    clean_tts_env.setenv("TTS_API_KEYS", "k1")
    clean_tts_env.setenv("TTS_AUTH_ENABLED", "false")
    with pytest.raises(deployment.DeploymentConfigError, match="TTS_AUTH_ENABLED=false is refused"):
        deployment.container_settings(ONE_CONTAINER())


def test_a_container_without_any_api_key_refuses_to_start(clean_tts_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(deployment.DeploymentConfigError, match="no API keys configured"):
        deployment.container_settings(ONE_CONTAINER())
    clean_tts_env.setenv("TTS_KEY_BACKEND", "supabase")
    with pytest.raises(deployment.DeploymentConfigError, match="TTS_SUPABASE_URL"):
        deployment.container_settings(ONE_CONTAINER())


def test_voices_are_never_kept_in_a_containers_own_files(clean_tts_env: pytest.MonkeyPatch) -> None:
    """A container's files vanish when it scales down and no other container sees them: without a database the
    voice library stores nothing (creating a voice answers 501); an explicit file store is refused."""
    clean_tts_env.setenv("TTS_API_KEYS", "k1")
    assert deployment.container_settings(ONE_CONTAINER()).resolved_voice_store == "none"
    clean_tts_env.setenv("TTS_DATABASE_URL", "postgresql://u@db/tts")
    assert deployment.container_settings(ONE_CONTAINER()).resolved_voice_store == "postgres"
    clean_tts_env.setenv("TTS_VOICE_STORE", "file")
    with pytest.raises(deployment.DeploymentConfigError, match="TTS_VOICE_STORE=file is refused on Modal"):
        deployment.container_settings(ONE_CONTAINER())


def test_gpu_snapshot_needs_the_vllm_sleep_mode_setting(clean_tts_env: pytest.MonkeyPatch) -> None:
    from shared.settings import FIELDS

    clean_tts_env.setenv("TTS_API_KEYS", "k1")
    cfg = ONE_CONTAINER(snapshot="gpu")
    if "vllm_sleep_mode" in FIELDS:
        assert deployment.container_settings(cfg).llm.vllm_sleep_mode is True
    else:
        with pytest.raises(deployment.DeploymentConfigError, match="TTS_VLLM_SLEEP_MODE"):
            deployment.container_settings(cfg)


# ------------------------------------------------------------------------- container lifecycle (ContainerLifecycle)


class HostEngine:
    supports_sleep = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def sleep(self, level: int = 1) -> None:
        self.calls.append(f"sleep({level})")

    async def wake_up(self) -> bool:
        self.calls.append("wake_up")
        return True


class HostRuntime:
    """Stands in for services.deployment.runtime.ModelRuntime: records which event loop loaded it."""

    def __init__(self, settings: object, *, fail: bool = False, end_state: str = "ready") -> None:
        self.settings = settings
        self.fail = fail
        self.end_state = end_state
        self.state = "starting"
        self.error: str | None = None
        self.engine = HostEngine()
        self.warmup_step: object = None  # ModelRuntime's: the lifecycle injects the pipeline warm-up
        self.start_loop: asyncio.AbstractEventLoop | None = None
        self.shutdowns = 0

    async def sleep_engine(self) -> None:  # ModelRuntime's: the engine's sleep, as idle sleep uses it
        await self.engine.sleep(1)

    async def wake_engine(self) -> None:
        await self.engine.wake_up()

    async def start(self) -> None:
        self.start_loop = asyncio.get_running_loop()
        if self.fail:
            self.state, self.error = "failed", "CheckpointError: /models/x: missing"
        elif self.end_state == "warmup_failed":
            self.state, self.error = (
                "warmup_failed",
                "warm-up failed: RuntimeError: CUDA error: device-side assert",
            )
        else:
            self.state, self.error = self.end_state, None

    def mark_unhealthy(self, reason: str) -> None:
        self.state, self.error = "unhealthy", reason

    async def shutdown(self) -> None:
        self.shutdowns += 1


def _host(monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> modal_app.ContainerLifecycle:
    for key in list(os.environ):
        if key.startswith("TTS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TTS_API_KEYS", "k1")
    kwargs.setdefault("runtime_factory", HostRuntime)
    kwargs.setdefault("stop_hook", lambda: None)
    host = modal_app.ContainerLifecycle(ONE_CONTAINER(), **kwargs)
    host.prepare()
    return host


def test_the_engine_is_loaded_on_the_loop_that_then_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _host(monkeypatch)
    assert host.runtime.state == "starting"  # prepare loads nothing
    loop = asyncio.new_event_loop()  # Modal's container runs enter coroutines and requests on one loop
    try:
        loop.run_until_complete(host.load())

        async def serving_loop() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        assert host.runtime.start_loop is loop.run_until_complete(serving_loop())
    finally:
        loop.close()
    assert host.runtime.state == "ready" and host.runtime.engine.calls == []


async def test_a_failed_load_raises_so_modal_sends_no_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _host(monkeypatch, runtime_factory=lambda settings: HostRuntime(settings, fail=True))
    with pytest.raises(RuntimeError, match="model loading ended failed, not ready: CheckpointError"):
        await host.load()


@pytest.mark.parametrize("snapshot", ["off", "gpu"])
async def test_a_failed_warmup_raises_before_any_sleep_or_snapshot(
    monkeypatch: pytest.MonkeyPatch, snapshot: str
) -> None:
    """A warm-up that hit a CUDA error must not become a serving container, nor be put to sleep and snapshotted
    (every restore would bring the broken state back)."""
    host = _host(
        monkeypatch, runtime_factory=lambda settings: HostRuntime(settings, end_state="warmup_failed")
    )
    host.cfg = ONE_CONTAINER(snapshot=snapshot)
    with pytest.raises(RuntimeError, match="model loading ended warmup_failed, not ready: warm-up failed"):
        await host.load()
    assert host.runtime.engine.calls == []  # never put to sleep, so never snapshotted


async def test_the_real_runtime_with_a_failing_warmup_never_serves(
    monkeypatch: pytest.MonkeyPatch, demo_model_dir: Path
) -> None:
    from services.deployment.runtime import ModelRuntime
    from services.model_status import RuntimeState

    async def failing_warmup(runtime: object) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def runtime_factory(settings) -> ModelRuntime:  # noqa: ANN001 - the container's Settings
        local = settings.model_copy(
            update={
                "engine": "transformers",
                "device": "cpu",
                "model_dir": demo_model_dir,
                "sr_enabled": False,
            }
        )
        return ModelRuntime(local, warmup=failing_warmup)

    host = _host(monkeypatch, runtime_factory=runtime_factory)
    try:
        with pytest.raises(
            RuntimeError, match="ended warmup_failed, not ready: warm-up failed: RuntimeError: CUDA"
        ):
            await host.load()
        assert host.runtime.state == RuntimeState.WARMUP_FAILED
    finally:
        await host.runtime.shutdown()


async def test_gpu_snapshot_sleeps_vllm_before_and_wakes_it_after(monkeypatch: pytest.MonkeyPatch) -> None:
    host = _host(monkeypatch)
    host.cfg = ONE_CONTAINER(snapshot="gpu")
    await host.load()
    assert host.runtime.engine.calls == ["sleep(1)"]
    await host.resume()
    assert host.runtime.engine.calls == ["sleep(1)", "wake_up"]


async def test_web_attaches_the_detector_and_stop_flushes_then_shuts_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    closed: list[str] = []

    class RequestLog:
        async def close(self) -> int:
            closed.append("request_log")
            return 0

    def factory(settings: object, runtime: object, gpu_faults: object) -> types.SimpleNamespace:
        services = types.SimpleNamespace(
            gpu_faults=gpu_faults, access=types.SimpleNamespace(request_logger=RequestLog())
        )
        return types.SimpleNamespace(state=types.SimpleNamespace(runtime=runtime, services=services))

    host = _host(monkeypatch, app_factory=factory)
    await host.load()
    web = host.web()
    assert web.state.runtime is host.runtime
    assert web.state.services.gpu_faults is host.detector
    assert host.detector.handle(RuntimeError("CUDA error: device-side assert triggered")) == GPU_FAULT
    assert host.runtime.state == "unhealthy"
    await host.stop()
    assert closed == ["request_log"] and host.runtime.shutdowns == 1


async def test_stop_closes_the_metrics_push_after_the_request_log_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Modal's exit closes the app's metrics pusher (final push, group deleted) in case the lifespan did not."""
    import types

    order: list[str] = []

    class RequestLog:
        async def close(self) -> int:
            order.append("request_log")
            return 0

    class Pusher:
        async def aclose(self) -> None:
            order.append("metrics_push")

    def factory(settings: object, runtime: object, gpu_faults: object) -> types.SimpleNamespace:
        services = types.SimpleNamespace(access=types.SimpleNamespace(request_logger=RequestLog()))
        return types.SimpleNamespace(state=types.SimpleNamespace(services=services, metrics_pusher=Pusher()))

    host = _host(monkeypatch, app_factory=factory)
    await host.load()
    host.web()
    await host.stop()
    assert order == ["request_log", "metrics_push"] and host.runtime.shutdowns == 1


# --------------------------------------------------------------------------------------- weights download


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_download_uses_the_full_spec_digests() -> None:
    paths = {f.path: f for f in modal_app.SPARK_FILES}
    assert (
        paths["LLM/model.safetensors"].sha256
        == "54825baf0a2f6076eb3c78fa1d22a95aee225f59070a8b295f8169db860eb109"
    )
    assert paths["BiCodec/model.safetensors"].sha256.startswith("e9940cd4")
    assert all(f.sha256 is None or len(f.sha256) == 64 for f in modal_app.SPARK_FILES + modal_app.APBWE_FILES)
    assert modal_app.SPARK_REVISION == "642071559bfc6346c2359d19dcb6be3f9dd8a05d"


class FakeVolume:
    def __init__(self) -> None:
        self.commits = 0

    def commit(self) -> None:
        self.commits += 1


def _fake_hub(files: dict[str, bytes], calls: list[dict]) -> object:
    def snapshot_download(repo_id: str, *, revision: str, local_dir: str, allow_patterns: list[str]) -> str:
        calls.append({"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns})
        for rel, data in files.items():
            _write(Path(local_dir) / rel, data)
        return local_dir

    return snapshot_download


def _run_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: dict[str, bytes]
) -> tuple[list[dict], FakeVolume]:
    import huggingface_hub

    calls: list[dict] = []
    volume = FakeVolume()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fake_hub(files, calls))
    monkeypatch.setattr(modal_app, "MODELS_PATH", str(tmp_path / "models"))
    monkeypatch.setattr(deployment, "MODELS_PATH", str(tmp_path / "models"))  # ModalConfig.model_dir reads it
    monkeypatch.setattr(modal_app, "models_volume", volume)
    good = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    monkeypatch.setattr(
        modal_app,
        "SPARK_FILES",
        (
            ExpectedFile("config.yaml", len(files["config.yaml"]), good["config.yaml"]),
            ExpectedFile("LLM/model.safetensors", len(files["LLM/model.safetensors"]), "d" * 64),
        ),
    )
    return calls, volume


@pytest.mark.filterwarnings("ignore:The download function is executing locally:UserWarning")
def test_download_stores_verifies_reports_and_commits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {"config.yaml": b"sample_rate: 16000\n", "LLM/model.safetensors": b"weights"}
    calls, volume = _run_download(monkeypatch, tmp_path, files)
    sr_source = tmp_path / "upload"
    sr_files = {name: b"ap-bwe " + name.encode() for name in ("config.json", "g_16kto48k")}
    for name, data in sr_files.items():
        _write(sr_source / name, data)
    monkeypatch.setattr(
        modal_app,
        "APBWE_FILES",
        tuple(ExpectedFile(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in sr_files.items()),
    )
    with pytest.raises(
        RuntimeError, match="1 file\\(s\\) failed verification and were set aside.*LLM/model.safetensors"
    ):
        modal_app.download.local(
            sr_url=str(sr_source / "g_16kto48k"),
            sr_config_url=str(sr_source / "config.json"),
            include_wav2vec2=False,
        )
    out = capsys.readouterr().out
    assert calls == [
        {
            "repo_id": "SparkAudio/Spark-TTS-0.5B",
            "revision": modal_app.SPARK_REVISION,
            "allow_patterns": ["config.yaml", "LLM/*", "BiCodec/*"],
        }
    ]
    assert "Spark-TTS-0.5B/config.yaml" in out and "verified" in out
    assert "Spark-TTS-0.5B/LLM/model.safetensors" in out and "SHA256 MISMATCH" in out
    assert "ap_bwe/16kto48k/g_16kto48k" in out
    models = tmp_path / "models"
    llm = models / "Spark-TTS-0.5B" / "LLM"
    assert not (llm / "model.safetensors").exists()  # never loaded ...
    kept = list(llm.glob("model.safetensors.rejected-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"weights"  # ... but never deleted
    assert "expected " + "d" * 64 in out and hashlib.sha256(b"weights").hexdigest() in out
    assert (models / "ap_bwe" / "16kto48k" / "g_16kto48k").read_bytes() == sr_files["g_16kto48k"]
    assert volume.commits == 1


# ------------------------------------------------------------------------------------ GPU fault detector


class FakeRuntime:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark_unhealthy(self, reason: str) -> None:
        self.reasons.append(reason)


class CodedError(Exception):
    """Stands in for services.pipeline.synthesis.SynthesisError (an error that already carries a public code)."""

    def __init__(self, code: str) -> None:
        super().__init__("A GPU fault interrupted generation.")
        self.code = code


def _faults(kind: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"{metrics.PREFIX}_gpu_faults_total", {"kind": kind}) or 0.0


def _pipeline_step() -> None:
    raise RuntimeError(
        "CUDA error: an illegal memory access was encountered\nCompile with TORCH_USE_CUDA_DSA"
    )


def _synthesis() -> None:
    try:
        _pipeline_step()
    except RuntimeError as exc:
        raise CodedError(GPU_FAULT) from exc


def test_cuda_error_from_the_pipeline_marks_unhealthy_and_stops_once() -> None:
    runtime, stops = FakeRuntime(), []
    detector = GpuFaultDetector(runtime, stop_hook=lambda: stops.append(1))
    before = _faults("fault")
    codes = []
    for _ in range(3):  # concurrent requests all fail the same way
        try:
            _synthesis()
        except CodedError as exc:
            codes.append(detector.handle(exc))
    assert codes == [GPU_FAULT] * 3
    assert stops == [1]
    assert len(runtime.reasons) == 1 and "illegal memory access" in runtime.reasons[0]
    assert detector.tripped and detector.tripped_kind is FaultKind.FAULT
    assert _faults("fault") == before + 1


def test_real_runtime_reports_unhealthy_after_a_fault() -> None:
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings

    runtime = ModelRuntime(Settings(device="cpu"))
    detector = GpuFaultDetector(runtime, stop_hook=lambda: None)
    assert detector.handle(RuntimeError("CUDA error: device-side assert triggered")) == GPU_FAULT
    report = runtime.health()
    assert report.status == "unhealthy" and "device-side assert" in (report.error or "")


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx( handle, opa, opb, ...)`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
        RuntimeError("NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:219, unhandled cuda error"),
        type("EngineDeadError", (Exception,), {})("EngineCore encountered an issue."),
    ],
)
def test_other_gpu_faults_are_recognised(exc: Exception) -> None:
    assert classify_gpu_error(exc) is FaultKind.FAULT


def test_torch_accelerator_and_oom_errors_are_classified() -> None:
    torch = pytest.importorskip("torch")
    assert classify_gpu_error(torch.AcceleratorError("CUDA error: misaligned address")) is FaultKind.FAULT
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert classify_gpu_error(oom) is FaultKind.OOM
    assert classify_gpu_error(RuntimeError("CUDA error: out of memory")) is FaultKind.OOM


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("temperature must be >= 0"),
        RuntimeError("Expected all tensors to be on the same device, but found cuda:0 and cpu!"),
        TimeoutError(),
    ],
)
def test_ordinary_errors_are_not_gpu_faults(exc: Exception) -> None:
    runtime, stops = FakeRuntime(), []
    detector = GpuFaultDetector(runtime, stop_hook=lambda: stops.append(1))
    assert detector.handle(exc) is None
    assert not runtime.reasons and not stops


def test_a_coded_error_is_judged_by_its_original_exception() -> None:
    assert classify_gpu_error(CodedError(GPU_FAULT)) is FaultKind.FAULT  # original lost: trust the code
    try:
        try:
            raise RuntimeError("Expected all tensors to be on the same device, cuda:0 and cpu")
        except RuntimeError as exc:
            raise CodedError(GPU_FAULT) from exc
    except CodedError as coded:
        assert classify_gpu_error(coded) is None  # a code bug must not drain every container


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _oom() -> Exception:
    return RuntimeError("CUDA out of memory. Tried to allocate 512.00 MiB (GPU 0; 44.35 GiB total capacity)")


def test_a_transient_oom_answers_503_but_keeps_the_container() -> None:
    runtime, stops, probes = FakeRuntime(), [], []
    detector = GpuFaultDetector(
        runtime, stop_hook=lambda: stops.append(1), probe=lambda n: probes.append(n) or True
    )
    assert detector.handle(_oom()) == GPU_OOM
    assert probes == [64 * 1024 * 1024]
    assert not detector.tripped and not stops and not runtime.reasons


def test_an_oom_that_does_not_clear_marks_unhealthy() -> None:
    runtime, stops = FakeRuntime(), []
    before = _faults("oom")
    detector = GpuFaultDetector(runtime, stop_hook=lambda: stops.append(1), probe=lambda n: False)
    assert detector.handle(_oom()) == GPU_OOM
    assert detector.tripped_kind is FaultKind.OOM and stops == [1]
    assert "persists after freeing cached memory" in runtime.reasons[0]
    assert _faults("oom") == before + 1


def test_repeated_ooms_within_the_window_mark_unhealthy() -> None:
    runtime, stops, clock = FakeRuntime(), [], Clock()
    detector = GpuFaultDetector(
        runtime,
        stop_hook=lambda: stops.append(1),
        probe=lambda n: True,
        clock=clock,
        oom_policy=OomPolicy(window_s=60, max_in_window=3),
    )
    for _ in range(2):
        assert detector.handle(_oom()) == GPU_OOM
        clock.now += 100  # spread out: each one alone is transient
    assert not detector.tripped
    for _ in range(3):
        detector.handle(_oom())
        clock.now += 10
    assert detector.tripped and stops == [1]
    assert "3 CUDA out-of-memory errors within 60 s" in runtime.reasons[0]


def test_a_failing_stop_hook_does_not_hide_the_fault() -> None:
    runtime = FakeRuntime()

    def broken() -> None:
        raise RuntimeError("Must be called from within a Modal container.")

    detector = GpuFaultDetector(runtime, stop_hook=broken)
    assert detector.handle(RuntimeError("CUDA error: unspecified launch failure")) == GPU_FAULT
    assert runtime.reasons


async def test_handle_async_runs_off_the_event_loop() -> None:
    runtime = FakeRuntime()
    callers: list[str] = []
    detector = GpuFaultDetector(
        runtime,
        stop_hook=lambda: None,
        probe=lambda n: callers.append(threading.current_thread().name) or True,
    )
    assert await detector.handle_async(_oom()) == GPU_OOM
    assert callers and callers[0] != threading.main_thread().name


def test_modal_stop_hook_calls_stop_fetching_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    import modal.experimental

    calls: list[float] = []
    monkeypatch.setattr(modal.experimental, "stop_fetching_inputs", lambda: calls.append(time.monotonic()))
    gpu_faults.modal_stop_fetching_inputs()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) == 1


def test_modal_stop_hook_outside_a_container_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="services.pipeline.gpu_faults")
    gpu_faults.modal_stop_fetching_inputs()  # the real Modal call raises outside a container; must not escape
    deadline = time.monotonic() + 10

    def logged() -> bool:
        return any("stop_fetching_inputs failed" in r.getMessage() for r in caplog.records)

    while not logged() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert logged()


def test_default_stop_hook_is_modal_only_inside_modal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODAL_IS_REMOTE", raising=False)
    assert gpu_faults.default_stop_hook() is not gpu_faults.modal_stop_fetching_inputs
    monkeypatch.setenv("MODAL_IS_REMOTE", "1")
    assert gpu_faults.default_stop_hook() is gpu_faults.modal_stop_fetching_inputs


def test_timeout_and_text_limit_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """No accepted text may need longer than one Modal input may run: the limit follows the timeout."""
    for key, value in {"TTS_API_KEYS": "k", "TTS_MAX_TEXT_CHARS": "50000"}.items():
        monkeypatch.setenv(key, value)
    cfg = ONE_CONTAINER(timeout=600)
    settings = deployment.container_settings(cfg)
    assert settings.limits.max_text_chars == 600 * deployment.MIN_CHARS_PER_SECOND < 50_000
    assert deployment.container_settings(ONE_CONTAINER()).limits.max_text_chars == 50_000  # 1 h covers 50k


def test_model_volume_is_never_created_implicitly_and_compile_threads_only_with_snapshots() -> None:
    source = (ROOT / "app.py").read_text()
    assert "Volume.from_name(MODAL.volume)" in source
    assert modal_app.SERVING_ENV["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert "TORCHINDUCTOR_COMPILE_THREADS" not in modal_app.SERVING_ENV  # snapshots are off by default


def test_the_modal_extra_is_the_deploy_client_alone_and_dev_includes_it() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    modal_extra = [Requirement(d) for d in extras["modal"]]
    assert [r.name for r in modal_extra] == ["modal"] and str(modal_extra[0].specifier).startswith("==")
    dev = [Requirement(d) for d in extras["dev"]]
    assert any(r.name == "spark-tts-service" and r.extras == {"modal"} for r in dev)  # one pin, in [modal]
    assert not any(r.name == "modal" for r in dev)
    # `modal deploy app.py` imports app.py on the deploying machine: nothing beyond the standard library and modal.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, app; print(' '.join(sys.modules))"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert not {"torch", "fastapi", "pydantic", "numpy", "transformers"} & set(loaded.stdout.split())
