"""Modal wiring only: the image, the model volume, secrets, the TTS class and the weights download.

    modal run app.py::download      # once: Spark-TTS-0.5B (+ AP-BWE) into the volume, sha256-checked
    modal deploy app.py             # the service

Deploy-time knobs are TTS_MODAL_* environment variables read into `ModalConfig` on the machine that runs
`modal deploy`; they are also handed to the container (`env=`) so its import of this file declares the same
class. The container's own service settings are the usual TTS_* variables (shared/settings/), mostly from
the Modal secret. This module imports only the standard library and modal at top level: the project packages
are imported inside the container methods, so `import app` works anywhere (no token, no network, no torch).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modal
from modal.file_pattern_matcher import FilePatternMatcher

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
    pass

logger = logging.getLogger("app")

from services.deployment.input_gate import modal_set_slots  # noqa: E402 - input slots follow admission
from services.deployment.modal_deployment import (  # noqa: E402 - deploy-time config and the container's lifecycle
    JOBS_PATH,
    MODELS_PATH,
    SPOOL_PATH,
    VLLM_CACHE_PATH,
    ContainerLifecycle,
    ModalConfig,
)

MODAL = ModalConfig.from_env()
SNAPSHOTS = MODAL.snapshot != "off"
GPU_SNAPSHOT = MODAL.snapshot == "gpu"

# ------------------------------------------------------------------------------------------------------------
# Image: the pins live in services/deployment/image_pins.py (shared with deploy/docker/Dockerfile).

from services.deployment.image_pins import IMAGE_PACKAGES, PYTHON_VERSION  # noqa: E402

LOCAL_PACKAGES: tuple[str, ...] = ("api", "core", "processing", "audio", "services", "shared")
# What of those packages the container gets: Python sources and the files the app serves (api/static/, the
# playground; pyproject's package-data). Modal's default would ship `.py` files only.
SHIPPED_FILES_IGNORE = ~FilePatternMatcher("**/*.py", "static/**")
SERVING_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",  # weights come from the volume; never reach for the Hub at serving time
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_CACHE_ROOT": VLLM_CACHE_PATH,
    # The parent process imports torch (and may touch CUDA) before vLLM starts its engine core: say `spawn`
    # explicitly instead of letting vLLM switch with a warning.
    "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
}
if SNAPSHOTS:
    # Snapshot-safe compile (docs/reference/modal-vllm.md#memory-snapshots).
    SERVING_ENV["TORCHINDUCTOR_COMPILE_THREADS"] = "1"

serving_image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    # Triton (under vLLM / torch.compile) compiles a small C launcher at run time: it needs a C compiler.
    .apt_install("build-essential")
    .uv_pip_install(*IMAGE_PACKAGES)
    .env(SERVING_ENV)
    .add_local_python_source(*LOCAL_PACKAGES, ignore=SHIPPED_FILES_IGNORE)  # last: no build step may follow
)
DOWNLOAD_PACKAGES: tuple[str, ...] = ("huggingface-hub==2.4.0",)
download_image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .uv_pip_install(*DOWNLOAD_PACKAGES)
    .env({"HF_XET_HIGH_PERFORMANCE": "1"})
    .add_local_python_source(
        "core", "services"
    )  # core.weights, services.deployment.modal_deployment (standard library only)
)

app = modal.App(MODAL.app_name)
# Never create the model volume implicitly: a typo would serve from an empty volume
# (docs/reference/modal-vllm.md#decorators).
models_volume = modal.Volume.from_name(MODAL.volume)
# Each container spools to its own file (named by its Modal task id) on this shared Volume; a starting container
# adopts the files of containers that are gone (services/usage/request_spool.py). Created on first deploy.
spool_volume = modal.Volume.from_name(f"{MODAL.app_name}-request-spool", create_if_missing=True)
# Long-form jobs' chapter files and books (services/jobs): a replacement container resumes a job from them.
jobs_volume = modal.Volume.from_name(f"{MODAL.app_name}-jobs", create_if_missing=True)
VOLUMES: dict[str, Any] = {MODELS_PATH: models_volume, SPOOL_PATH: spool_volume, JOBS_PATH: jobs_volume}
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


class _AppFactory:
    """api.create_app, imported inside the container only (it imports torch)."""

    @staticmethod
    def preload() -> None:
        import api  # noqa: F401

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from api import create_app

        return create_app(*args, **kwargs)


_create_app = _AppFactory()


async def _spawn_job_holder() -> bool:
    """The job holds' Modal adapter: one `render_jobs` input on the deployed class (Modal's queue picks the
    container), waited for; whether it left work (services/deployment/job_holds.py)."""
    holder = modal.Cls.from_name(MODAL.app_name, "TTSService")()
    call = await holder.render_jobs.spawn.aio()
    return bool(await call.get.aio())


def _commit_volumes() -> None:
    """What the container wrote that another must see: the request-log spool and the jobs' files."""
    spool_volume.commit()
    jobs_volume.commit()


@app.cls(**CLS_OPTIONS)
@modal.concurrent(**CONCURRENCY)
class TTSService:
    """The Modal class: loads the models once per container and serves the FastAPI app (see ContainerLifecycle).

    Enter order: `prepare` (sync) -> `load` (async: Modal runs async enter methods on the container's event
    loop, the loop that then serves the ASGI app; the engine is built in a worker thread and the warm-up's
    requests tie vLLM's output handler to this serving loop) -> `resume`.
    TTS_MODAL_SNAPSHOT=cpu snapshots after `prepare` (imports done, no GPU touched); =gpu after `load`.

    `TTSService().web.local()` (tests, no Modal): Modal runs only the sync enter methods locally, so `load` is
    skipped and the returned app loads the runtime in its own lifespan, on the loop that serves it.
    """

    @modal.enter(snap=SNAPSHOTS)
    def prepare(self) -> None:
        self.host = ContainerLifecycle(
            MODAL,
            app_factory=_create_app,
            volume_commit=_commit_volumes,
            set_slots=modal_set_slots,
            # Outside a Modal container (`.local()`) no holder can be spawned: the job worker claims freely there.
            spawn_holder=None if modal.is_local() else _spawn_job_holder,
        )
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

    @modal.method()
    async def render_jobs(self) -> bool:
        """A job holder: while this input is in flight the container renders jobs and Modal keeps it (a container
        with an input in flight is never scaled down); returns whether work was left for the next holder."""
        return await self.host.render_jobs()

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
    env={**MODAL.as_env()},  # the container must see the same TTS_MODAL_*_SUBDIR as `modal run` did
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
