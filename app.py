"""Modal wiring only: the image, the model volume, secrets, the TTS class and the weights download.

    modal run app.py::download      # once: Spark-TTS-0.5B (+ AP-BWE) into the volume, sha256-checked
    modal deploy app.py             # the service

Deploy-time knobs are TTS_MODAL_* environment variables read into `ModalConfig` on the machine that runs
`modal deploy`; they are also handed to the container (`env=`) so its import of this file declares the same
class. The container's own service settings are the usual TTS_* variables (shared/settings.py), mostly from
the Modal secret. This module imports only the standard library and modal at top level: the project packages
are imported inside the container methods, so `import app` works anywhere (no token, no network, no torch).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modal

# Standard library only (the download image has no torch): digests, verification, set-aside, target checks.
from core.weights import (
    APBWE_FILES,
    APBWE_REPO,
    APBWE_REVISION,
    APBWE_SUBDIR,
    SPARK_FILES,
    SPARK_REPO,
    SPARK_REVISION,
    WAV2VEC2_FILES,
    FileReport,
    check_target,
    fetch,
    format_reports,
    verify_tree,
    write_stamp,
)

if TYPE_CHECKING:
    from shared.settings import Settings

logger = logging.getLogger("app")

# ------------------------------------------------------------------------------------------------------------
# Deploy-time configuration


class DeploymentConfigError(RuntimeError):
    """A configuration that must not serve traffic (named variable, what is wrong, what to set)."""


SNAPSHOT_MODES = ("off", "cpu", "gpu")


def _env_str(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _env_int(
    environ: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = _env_str(environ, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise DeploymentConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise DeploymentConfigError(f"{name}={value} is out of range; it must be >= {minimum}{upper}")
    return value


def _env_float(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = _env_str(environ, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise DeploymentConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise DeploymentConfigError(f"{name}={value} is out of range; it must be >= {minimum}")
    return value


def _env_list(environ: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    raw = environ.get(name)
    raw = default if raw is None else raw
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class ModalConfig:
    """Modal-only knobs (never in shared/settings.py). Each field reads TTS_MODAL_<NAME>; see deploy/RUNBOOK.md."""

    app_name: str = "veena3-tts"  # TTS_MODAL_APP_NAME
    gpu: tuple[str, ...] = ("L40S",)  # TTS_MODAL_GPU: a type, or a fallback list "H100,A100-80GB"
    cpu: float = 4.0  # TTS_MODAL_CPU: physical cores requested
    memory_mb: int = 16384  # TTS_MODAL_MEMORY_MB: RAM request in MiB
    min_containers: int = 1  # TTS_MODAL_MIN_CONTAINERS: kept warm even when idle
    max_containers: int = 10  # TTS_MODAL_MAX_CONTAINERS: hard ceiling
    buffer_containers: int = 2  # TTS_MODAL_BUFFER_CONTAINERS: idle extras kept while under load
    scaledown_window: int = 180  # TTS_MODAL_SCALEDOWN_WINDOW: idle seconds before a container stops (2..3600)
    # TTS_MODAL_TIMEOUT: per-input limit in seconds. One HTTP stream or one WebSocket connection is one input, so
    # this bounds the longest request and session; the container's text limit is derived from it (see below).
    timeout: int = 3600
    startup_timeout: int = 1200  # TTS_MODAL_STARTUP_TIMEOUT: model load + vLLM compile + warm-up limit
    max_inputs: int = 12  # TTS_MODAL_MAX_INPUTS: concurrent requests per container (hard)
    target_inputs: int = 8  # TTS_MODAL_TARGET_INPUTS: concurrency the autoscaler aims for
    snapshot: str = "off"  # TTS_MODAL_SNAPSHOT: off | cpu | gpu (alpha; see RUNBOOK)
    volume: str = "veena3-models"  # TTS_MODAL_VOLUME: model volume, mounted at /models
    secrets: tuple[str, ...] = ("veena3-secrets",)  # TTS_MODAL_SECRETS: comma list of Modal secret names
    model_subdir: str = "Spark-TTS-0.5B"  # TTS_MODAL_MODEL_SUBDIR: checkpoint directory inside the volume
    sr_subdir: str = "ap_bwe/16kto48k"  # TTS_MODAL_SR_SUBDIR: AP-BWE directory inside the volume
    region: tuple[str, ...] = ()  # TTS_MODAL_REGION: comma list; empty = anywhere
    vllm_cache_volume: str = ""  # TTS_MODAL_VLLM_CACHE_VOLUME: volume for vLLM compile caches; "" = none

    def __post_init__(self) -> None:
        if not self.gpu:
            raise DeploymentConfigError("TTS_MODAL_GPU is empty; name a GPU type such as L40S or H100")
        if self.min_containers > self.max_containers:
            raise DeploymentConfigError(
                f"TTS_MODAL_MIN_CONTAINERS={self.min_containers} exceeds TTS_MODAL_MAX_CONTAINERS={self.max_containers}"
            )
        if self.target_inputs > self.max_inputs:
            raise DeploymentConfigError(
                f"TTS_MODAL_TARGET_INPUTS={self.target_inputs} exceeds TTS_MODAL_MAX_INPUTS={self.max_inputs}"
            )
        if self.snapshot not in SNAPSHOT_MODES:
            raise DeploymentConfigError(
                f"TTS_MODAL_SNAPSHOT={self.snapshot!r}; accepted: {', '.join(SNAPSHOT_MODES)}"
            )
        for name, sub in (
            ("TTS_MODAL_MODEL_SUBDIR", self.model_subdir),
            ("TTS_MODAL_SR_SUBDIR", self.sr_subdir),
        ):
            if sub.startswith("/") or ".." in Path(sub).parts:
                raise DeploymentConfigError(f"{name}={sub!r} must be a relative path inside the volume")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ModalConfig:
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            app_name=_env_str(env, "TTS_MODAL_APP_NAME", d.app_name),
            gpu=_env_list(env, "TTS_MODAL_GPU", ",".join(d.gpu)),
            cpu=_env_float(env, "TTS_MODAL_CPU", d.cpu, 0.125),
            memory_mb=_env_int(env, "TTS_MODAL_MEMORY_MB", d.memory_mb, 1024),
            min_containers=_env_int(env, "TTS_MODAL_MIN_CONTAINERS", d.min_containers, 0),
            max_containers=_env_int(env, "TTS_MODAL_MAX_CONTAINERS", d.max_containers, 1),
            buffer_containers=_env_int(env, "TTS_MODAL_BUFFER_CONTAINERS", d.buffer_containers, 0),
            scaledown_window=_env_int(env, "TTS_MODAL_SCALEDOWN_WINDOW", d.scaledown_window, 2, 3600),
            timeout=_env_int(env, "TTS_MODAL_TIMEOUT", d.timeout, 1, 86_400),
            startup_timeout=_env_int(env, "TTS_MODAL_STARTUP_TIMEOUT", d.startup_timeout, 1, 86_400),
            max_inputs=_env_int(env, "TTS_MODAL_MAX_INPUTS", d.max_inputs, 1),
            target_inputs=_env_int(env, "TTS_MODAL_TARGET_INPUTS", d.target_inputs, 1),
            snapshot=_env_str(env, "TTS_MODAL_SNAPSHOT", d.snapshot).lower(),
            volume=_env_str(env, "TTS_MODAL_VOLUME", d.volume),
            secrets=_env_list(env, "TTS_MODAL_SECRETS", ",".join(d.secrets)),
            model_subdir=_env_str(env, "TTS_MODAL_MODEL_SUBDIR", d.model_subdir).strip("/"),
            sr_subdir=_env_str(env, "TTS_MODAL_SR_SUBDIR", d.sr_subdir).strip("/"),
            region=_env_list(env, "TTS_MODAL_REGION", ""),
            vllm_cache_volume=_env_str(env, "TTS_MODAL_VLLM_CACHE_VOLUME", ""),
        )

    def as_env(self) -> dict[str, str]:
        """The TTS_MODAL_* variables that reproduce this config (handed to the container)."""
        return {
            "TTS_MODAL_APP_NAME": self.app_name,
            "TTS_MODAL_GPU": ",".join(self.gpu),
            "TTS_MODAL_CPU": str(self.cpu),
            "TTS_MODAL_MEMORY_MB": str(self.memory_mb),
            "TTS_MODAL_MIN_CONTAINERS": str(self.min_containers),
            "TTS_MODAL_MAX_CONTAINERS": str(self.max_containers),
            "TTS_MODAL_BUFFER_CONTAINERS": str(self.buffer_containers),
            "TTS_MODAL_SCALEDOWN_WINDOW": str(self.scaledown_window),
            "TTS_MODAL_TIMEOUT": str(self.timeout),
            "TTS_MODAL_STARTUP_TIMEOUT": str(self.startup_timeout),
            "TTS_MODAL_MAX_INPUTS": str(self.max_inputs),
            "TTS_MODAL_TARGET_INPUTS": str(self.target_inputs),
            "TTS_MODAL_SNAPSHOT": self.snapshot,
            "TTS_MODAL_VOLUME": self.volume,
            "TTS_MODAL_SECRETS": ",".join(self.secrets),
            "TTS_MODAL_MODEL_SUBDIR": self.model_subdir,
            "TTS_MODAL_SR_SUBDIR": self.sr_subdir,
            "TTS_MODAL_REGION": ",".join(self.region),
            "TTS_MODAL_VLLM_CACHE_VOLUME": self.vllm_cache_volume,
        }

    @property
    def gpu_request(self) -> str | list[str]:
        return self.gpu[0] if len(self.gpu) == 1 else list(self.gpu)

    @property
    def model_dir(self) -> str:
        return f"{MODELS_PATH}/{self.model_subdir}"

    @property
    def sr_dir(self) -> str:
        return f"{MODELS_PATH}/{self.sr_subdir}"


MODELS_PATH = "/models"
SPOOL_PATH = "/spool"  # the request-log spool: on a Volume so a replacement container finds what is left
VLLM_CACHE_PATH = "/root/.cache/vllm"
# Slowest sustained synthesis speed a full container is sized for, in characters of text per second of wall
# time (about real time under load: speech runs ~14-16 characters a second). The accepted text length is capped
# at timeout x this, so no accepted request can outlive its Modal input.
MIN_CHARS_PER_SECOND = 14
MODAL = ModalConfig.from_env()
SNAPSHOTS = MODAL.snapshot != "off"
GPU_SNAPSHOT = MODAL.snapshot == "gpu"

# ------------------------------------------------------------------------------------------------------------
# Image: vLLM 0.33 pins torch==2.14.0 and needs fastapi[standard]>=0.133,<0.137 and transformers>=5.16.1,<5.21
# (specs/modal_vllm.md B0). The rest are exact versions from a resolve of this list together with vllm==0.33.0
# for CPython 3.12 / manylinux_2_28 x86_64; pyproject.toml's ranges must admit every one of them (unit-tested).

PYTHON_VERSION = "3.12"
IMAGE_PACKAGES: tuple[str, ...] = (
    "vllm==0.33.0",
    "torch==2.14.0",
    "fastapi[standard]==0.136.3",
    "transformers==5.20.2",
    "tokenizers==0.23.3",
    "huggingface-hub==2.4.0",
    "safetensors==0.8.0",
    "uvicorn[standard]==0.54.0",
    "pydantic==2.14.3",
    "pydantic-settings==2.16.3",
    "pyyaml==6.0.3",
    "numpy==2.3.5",
    "soxr==1.1.0",
    "av==19.0.2",
    "prometheus-client==0.26.0",
    "supabase==2.34.1",
    "redis==8.1.0",
    "asyncpg==0.32.0",
)
LOCAL_PACKAGES: tuple[str, ...] = ("api", "core", "processing", "audio", "services", "shared")
SERVING_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",  # weights come from the volume; never reach for the Hub at serving time
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_CACHE_ROOT": VLLM_CACHE_PATH,
    # The parent process imports torch (and may touch CUDA) before vLLM starts its engine core: say `spawn`
    # explicitly instead of letting vLLM switch with a warning.
    "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
}
if SNAPSHOTS:
    SERVING_ENV["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # snapshot-safe compile (specs/modal_vllm.md A1e)

serving_image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    # Triton (under vLLM / torch.compile) compiles a small C launcher at run time: it needs a C compiler.
    .apt_install("build-essential")
    .uv_pip_install(*IMAGE_PACKAGES)
    .env(SERVING_ENV)
    .add_local_python_source(*LOCAL_PACKAGES)  # must stay last: build steps after add_local_* are refused
)
DOWNLOAD_PACKAGES: tuple[str, ...] = ("huggingface-hub==2.4.0",)
download_image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .uv_pip_install(*DOWNLOAD_PACKAGES)
    .env({"HF_XET_HIGH_PERFORMANCE": "1"})
    .add_local_python_source("core")  # core.weights (standard library only)
)

app = modal.App(MODAL.app_name)
# Never create the model volume implicitly: a typo would serve from an empty volume (first_contact.md §4).
models_volume = modal.Volume.from_name(MODAL.volume)
# Each container spools to its own file (named by its Modal task id) on this shared Volume; a starting container
# adopts the files of containers that are gone (services/request_spool.py). Created on first deploy.
spool_volume = modal.Volume.from_name(f"{MODAL.app_name}-request-spool", create_if_missing=True)
VOLUMES: dict[str, Any] = {MODELS_PATH: models_volume, SPOOL_PATH: spool_volume}
if MODAL.vllm_cache_volume:
    VOLUMES[VLLM_CACHE_PATH] = modal.Volume.from_name(MODAL.vllm_cache_volume, create_if_missing=True)
SECRETS = [modal.Secret.from_name(name) for name in MODAL.secrets]

CLS_OPTIONS: dict[str, Any] = {
    "image": serving_image,
    "gpu": MODAL.gpu_request,
    "cpu": MODAL.cpu,
    "memory": MODAL.memory_mb,
    "volumes": VOLUMES,
    "secrets": SECRETS,
    "env": MODAL.as_env(),
    "min_containers": MODAL.min_containers,
    "max_containers": MODAL.max_containers,
    "buffer_containers": MODAL.buffer_containers,
    "scaledown_window": MODAL.scaledown_window,
    "timeout": MODAL.timeout,
    "startup_timeout": MODAL.startup_timeout,
    "enable_memory_snapshot": SNAPSHOTS,
    "experimental_options": {"enable_gpu_snapshot": True} if GPU_SNAPSHOT else None,
    "region": list(MODAL.region) or None,
}
CONCURRENCY: dict[str, int] = {"max_inputs": MODAL.max_inputs, "target_inputs": MODAL.target_inputs}

# ------------------------------------------------------------------------------------------------------------
# Container settings


def _env_is_set(environ: Mapping[str, str], field: str) -> bool:
    wanted = f"TTS_{field}".upper()
    return any(key.upper() == wanted for key in environ)


def check_container_settings(settings: Settings) -> None:
    """Refuse configurations that must not take traffic on Modal (raises DeploymentConfigError)."""
    if not settings.auth_enabled:
        raise DeploymentConfigError(
            "TTS_AUTH_ENABLED=false is refused on Modal: the endpoint is public. Remove it from the secret / "
            "environment (auth can only be switched off for local development)."
        )
    if settings.key_backend == "static" and not settings.api_keys.strip() and settings.api_keys_file is None:
        raise DeploymentConfigError(
            "no API keys configured: every request would get 401. Set TTS_API_KEYS (comma-separated) in the "
            "Modal secret, or TTS_KEY_BACKEND=postgres|supabase with TTS_DATABASE_URL or TTS_SUPABASE_URL/KEY."
        )
    if settings.key_backend == "postgres" and not settings.database_url:
        raise DeploymentConfigError("TTS_KEY_BACKEND=postgres needs TTS_DATABASE_URL in the Modal secret")
    if settings.key_backend == "supabase" and not (settings.supabase_url and settings.supabase_key):
        raise DeploymentConfigError("TTS_KEY_BACKEND=supabase needs TTS_SUPABASE_URL and TTS_SUPABASE_KEY")


def container_settings(cfg: ModalConfig) -> Settings:
    """The service's Settings inside the container: volume paths, vLLM on CUDA, unless TTS_* says otherwise."""
    from shared.settings import Settings

    env = os.environ
    defaults: dict[str, Any] = {
        "model_dir": cfg.model_dir,
        "sr_dir": cfg.sr_dir,
        "engine": "vllm",
        "device": "cuda",
        "request_log_spool_dir": SPOOL_PATH,
    }
    overrides = {name: value for name, value in defaults.items() if not _env_is_set(env, name)}
    if cfg.snapshot == "gpu":
        overrides["vllm_sleep_mode"] = True  # vLLM must release its KV cache before the GPU snapshot
    settings = Settings(**overrides)
    check_container_settings(settings)
    longest = cfg.timeout * MIN_CHARS_PER_SECOND
    if settings.max_text_chars > longest:
        logger.warning(
            "text limit lowered to what the Modal timeout allows",
            extra={"max_text_chars": longest, "configured": settings.max_text_chars, "timeout_s": cfg.timeout},
        )
        settings = settings.model_copy(update={"max_text_chars": longest})
    return settings


# ------------------------------------------------------------------------------------------------------------
# The service


class ServiceHost:
    """What the Modal class does in its container, with Modal left out (so it is testable locally).

    prepare: settings (refusing a bad configuration), runtime and GPU fault detector; nothing loaded.
    load: loads and warms the runtime on the running event loop (vLLM's AsyncLLM binds to it); raises when the
    runtime ended FAILED; for a GPU snapshot puts vLLM to sleep (level 1: no KV cache, weights offloaded).
    resume: after a restore, fresh randomness and (GPU snapshot) vLLM woken up.
    web: the FastAPI app around the runtime and the GPU fault detector.
    stop: flush the request log and shut the engine down (both safe after the app's own lifespan shutdown).
    """

    def __init__(
        self,
        cfg: ModalConfig,
        *,
        runtime_factory: Callable[[Settings], Any] | None = None,
        app_factory: Callable[..., Any] | None = None,
        stop_hook: Callable[[], object] | None = None,
    ) -> None:
        self.cfg = cfg
        self._runtime_factory = runtime_factory
        self._app_factory = app_factory
        self._stop_hook = stop_hook
        self.settings: Settings | None = None
        self.runtime: Any = None
        self.detector: Any = None
        self.web_app: Any = None

    def prepare(self) -> None:
        self.settings = container_settings(self.cfg)  # first: a refused configuration fails before any import

        from services.gpu_health import GpuFaultDetector, modal_stop_fetching_inputs
        from services.runtime import ModelRuntime

        if self.cfg.snapshot != "off":
            import api  # noqa: F401 - so the memory snapshot already holds the heavy imports

        self.runtime = (self._runtime_factory or ModelRuntime)(self.settings)
        if getattr(self.runtime, "warmup_step", False) is None:
            from services.synthesis import warmup_pipeline

            self.runtime.warmup_step = warmup_pipeline
        self.detector = GpuFaultDetector(
            self.runtime, stop_hook=self._stop_hook or modal_stop_fetching_inputs
        )
        logger.info(
            "container configured",
            extra={
                "model_dir": str(self.settings.model_dir),
                "engine": self.settings.engine,
                "snapshot": self.cfg.snapshot,
            },
        )

    async def load(self) -> None:
        await self.runtime.start()
        if str(getattr(self.runtime.state, "value", self.runtime.state)) == "failed":
            # Raising keeps Modal from routing traffic here; it retries with a fresh container.
            raise RuntimeError(f"model loading failed: {self.runtime.error}")
        if self.cfg.snapshot == "gpu":
            engine = self.runtime.engine
            if not engine.supports_sleep:
                raise DeploymentConfigError("TTS_MODAL_SNAPSHOT=gpu needs TTS_ENGINE=vllm (sleep / wake_up)")
            await engine.sleep(1)
            logger.info("vLLM asleep for the GPU snapshot")

    async def resume(self) -> None:
        if self.cfg.snapshot == "off":
            return
        import random

        import numpy as np
        import torch

        # Every restore starts from the same memory image: draw fresh randomness.
        random.seed()
        np.random.seed()
        torch.seed()
        if self.cfg.snapshot == "gpu":
            await self.runtime.engine.wake_up()
            logger.info("vLLM awake after restore")

    def web(self) -> Any:
        factory = self._app_factory
        if factory is None:
            from api import create_app as factory
        web_app = factory(self.settings, runtime=self.runtime, gpu_faults=self.detector)
        self.web_app = web_app
        return web_app

    async def stop(self) -> None:
        services = getattr(self.web_app.state, "services", None) if self.web_app is not None else None
        request_log = services.access.request_logger if services is not None else None
        if request_log is not None:
            try:
                await request_log.close()
            except Exception:  # noqa: BLE001 - exiting anyway; say so
                logger.exception("request log flush failed at exit")
        if self.runtime is not None:
            await self.runtime.shutdown()


@app.cls(**CLS_OPTIONS)
@modal.concurrent(**CONCURRENCY)
class TTSService:
    """The Modal class: loads the models once per container and serves the FastAPI app (see ServiceHost).

    Enter order: `prepare` (sync) -> `load` (async: Modal runs async enter methods on the container's event
    loop, the loop that then serves the ASGI app, so vLLM's AsyncLLM lives on the serving loop) -> `resume`.
    TTS_MODAL_SNAPSHOT=cpu snapshots after `prepare` (imports done, no GPU touched); =gpu after `load`.

    `TTSService().web.local()` (tests, no Modal): Modal runs only the sync enter methods locally, so `load` is
    skipped and the returned app loads the runtime in its own lifespan, on the loop that serves it.
    """

    @modal.enter(snap=SNAPSHOTS)
    def prepare(self) -> None:
        self.host = ServiceHost(MODAL)
        self.host.prepare()

    @modal.enter(snap=GPU_SNAPSHOT)
    async def load(self) -> None:
        await self.host.load()

    @modal.enter(snap=False)
    async def resume(self) -> None:
        await self.host.resume()

    @modal.asgi_app()
    def web(self) -> Any:
        return self.host.web()

    @modal.exit()
    async def stop(self) -> None:
        # Modal runs the ASGI lifespan shutdown before exit methods.
        await self.host.stop()


# ------------------------------------------------------------------------------------------------------------
# Weights: `modal run app.py::download [--sr-url URL] [--sr-config-url URL]`

SPARK_PATTERNS = ("config.yaml", "LLM/*", "BiCodec/*")
WAV2VEC2_PATTERN = "wav2vec2-large-xlsr-53/*"
APBWE_MIRROR = f"hf://{APBWE_REPO}/{APBWE_SUBDIR}"  # third-party mirror, claimed byte-identical


def _prefixed(reports: list[FileReport], prefix: str) -> list[FileReport]:
    return [dataclasses.replace(r, path=f"{prefix}{r.path}") for r in reports]


def fetch_to(source: str, dest: Path) -> None:
    """Copy `source` to `dest`: an http(s) URL, `hf://owner/repo/path/in/repo`, or a path in the container
    (e.g. a file put on the volume with `modal volume put`). URLs go through `dest.part` and resume."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.startswith("hf://"):
        from huggingface_hub import hf_hub_download

        owner, repo, *rest = source.removeprefix("hf://").split("/")
        if not rest:
            raise ValueError(f"{source}: expected hf://owner/repo/path/in/repo")
        cached = hf_hub_download(repo_id=f"{owner}/{repo}", filename="/".join(rest))
        shutil.copyfile(cached, dest)
        return
    local = Path(source)
    if local.is_absolute():
        if not local.is_file():
            raise FileNotFoundError(
                f"{source}: no such file in the container (upload it with `modal volume put`)"
            )
        if local.resolve() != dest.resolve():
            shutil.copyfile(local, dest)
        return
    if not source.startswith(("https://", "http://")):
        raise ValueError(f"{source!r}: expected an http(s) URL, hf://owner/repo/path, or an absolute path")
    fetch(source, dest)  # through dest.part, resumable (core.weights)


@app.function(
    image=download_image,
    volumes={MODELS_PATH: models_volume},
    env=MODAL.as_env(),  # the container must see the same TTS_MODAL_*_SUBDIR as `modal run` did
    timeout=3600,
    cpu=2.0,
    memory=4096,
)
def download(
    sr_url: str = "",
    sr_config_url: str = "",
    revision: str = SPARK_REVISION,
    include_wav2vec2: bool = True,
) -> list[dict[str, Any]]:
    """Fetch Spark-TTS-0.5B (pinned revision) and optionally AP-BWE 16kto48k into the volume, verify, commit.

    sr_url / sr_config_url: g_16kto48k and its config.json, each an http(s) URL, hf://owner/repo/path, or a
    path inside the container; "mirror" uses the third-party HF mirror. Files that fail verification are
    moved aside (never deleted) and the run fails after printing the table, which names the expected and
    found digests. A target directory holding another checkpoint (a fine-tune) is refused before any write.
    """
    from huggingface_hub import snapshot_download

    model_root = Path(MODAL.model_dir)
    sr_root = Path(MODAL.sr_dir)
    check_target(model_root, SPARK_REPO, revision)
    write_stamp(model_root, SPARK_REPO, revision)
    patterns = [*SPARK_PATTERNS, *([WAV2VEC2_PATTERN] if include_wav2vec2 else [])]
    if revision != SPARK_REVISION:
        print(f"WARNING: revision {revision} is not the pinned {SPARK_REVISION}; hashes may not match")
    print(f"downloading {SPARK_REPO}@{revision[:12]} -> {model_root}")
    snapshot_download(
        repo_id=SPARK_REPO, revision=revision, local_dir=str(model_root), allow_patterns=patterns
    )
    expected = SPARK_FILES + (WAV2VEC2_FILES if include_wav2vec2 else ())
    reports = _prefixed(verify_tree(model_root, expected), f"{MODAL.model_subdir}/")

    if sr_url or sr_config_url:
        sources = {
            "g_16kto48k": f"{APBWE_MIRROR}/g_16kto48k.zip" if sr_url == "mirror" else sr_url,
            "config.json": f"{APBWE_MIRROR}/config.json" if sr_config_url == "mirror" else sr_config_url,
        }
        check_target(sr_root, APBWE_REPO, APBWE_REVISION)
        for name, source in sources.items():
            if source:
                print(f"fetching AP-BWE {name} <- {source}")
                fetch_to(source, sr_root / name)
        reports += _prefixed(verify_tree(sr_root, APBWE_FILES), f"{MODAL.sr_subdir}/")
    else:
        print(
            "AP-BWE not requested (--sr-url/--sr-config-url): 48 kHz output will be resampled, health 'degraded'"
        )

    print(format_reports(reports))
    models_volume.commit()
    bad = [r.path for r in reports if not r.ok]
    if bad:
        raise RuntimeError(
            f"{len(bad)} file(s) failed verification and were set aside (NAME.rejected-<sha>), not loaded: "
            + ", ".join(bad)
        )
    return [{"path": r.path, "bytes": r.size, "status": r.status, "sha256": r.sha256} for r in reports]
