"""The Modal deployment without Modal: deploy-time configuration (`ModalConfig`, from TTS_MODAL_* variables), the
container's service settings and the checks that refuse unsafe ones, and `ContainerLifecycle`, what the Modal class
does in its container (prepare, load, resume, web, stop) so it can be tested locally. app.py wires these to Modal.

Standard library only at top level: `import app` must work anywhere (no torch), and app.py imports this module.
Longer than 500 lines because the deploy-time knobs, the checks that refuse them and the container's lifecycle read
the same settings and are tested together as what app.py wires.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.deployment.fleet import (
    MAX_INPUTS,
    TARGET_INPUTS,
    engine_seqs_for,
    forked_state,
    parse_forked_allowance,
)
from services.deployment.input_gate import InputGate
from services.deployment.job_holds import JobHolds

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


def _knob(default: Any, description: str) -> Any:
    """A ModalConfig field with the description the settings table prints (scripts/settings_table.py)."""
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True)
class ModalConfig:
    """Modal-only knobs (never in shared/settings/). Each field reads TTS_MODAL_<NAME>; see deploy/RUNBOOK.md."""

    app_name: str = _knob("veena3-tts", "Modal app name (the request-log spool volume is named after it).")
    # H200: the card the fleet's sizing (fleet.py), the goals' costs (bench/cost_models/h200-*.json) and admission's
    # carried streams (services/device/carried.py) are stated for; another card carries an unmeasured count.
    gpu: tuple[str, ...] = _knob(
        ("H200",),
        "GPU type; a comma list (H200,H100) is a fallback order. H200 is what the fleet's sizing, the goals' costs "
        "and admission's carried streams are stated for; on another card admission reads its measures alone and "
        "the inputs should be sized from its own measure (deploy/RUNBOOK.md).",
    )
    cpu: float = _knob(4.0, "Physical cores requested.")
    memory_mb: int = _knob(16384, "RAM request in MiB.")
    min_containers: int = _knob(1, "Containers kept warm even when idle (0: scale to zero, cold starts).")
    max_containers: int = _knob(10, "Hard ceiling on containers.")
    buffer_containers: int = _knob(2, "Idle extra containers kept while under load.")
    scaledown_window: int = _knob(180, "Idle seconds before a container stops (2..3600).")
    # One HTTP stream or one WebSocket connection is one input, so this bounds the longest request and session; the
    # container's text limit is derived from it (MIN_CHARS_PER_SECOND below).
    timeout: int = _knob(
        3600,
        "Per-input limit in seconds: one HTTP stream or one WebSocket connection is one input "
        "and is cut at this time. The container lowers TTS_MAX_TEXT_CHARS to timeout x 14 "
        "characters/s when it would allow longer texts.",
    )
    startup_timeout: int = _knob(1200, "Seconds for model load + vLLM compile + warm-up.")
    # Inputs (an HTTP request or a WebSocket connection each) per container, sized from what one GPU holds
    # (services/deployment/fleet.py has the figures): the cap lets one container take the per-GPU goal (250 streams
    # open at once in a burst) so admission, not the cap, decides; the target is where the autoscaler adds one.
    max_inputs: int = _knob(
        MAX_INPUTS,
        "Concurrent requests per container (hard cap; a WebSocket connection is one, idle or not): at least "
        "the per-GPU goal of 250 streams, so admission decides what one GPU carries. The container sets "
        "TTS_MAX_NUM_SEQS to twice this unless it is set.",
    )
    target_inputs: int = _knob(
        TARGET_INPUTS,
        "Concurrency the autoscaler aims for before adding containers: above the ~100 streams one GPU plays "
        "at steady load, half the cap so a burst fits while a container starts.",
    )
    forked_state: tuple[str, ...] = _knob(
        (),
        "With TTS_MODAL_MAX_CONTAINERS > 1, the per-container stores accepted to fork (comma list of credits, "
        "limits, jobs, continuity); any other the settings leave per container refuses the start.",
    )
    snapshot: str = _knob("off", "Memory snapshots: off, cpu or gpu (alpha; deploy/RUNBOOK.md).")
    volume: str = _knob(
        "veena3-models",
        "Model volume, mounted at /models; never created by a deploy (a mistyped name fails it).",
    )
    secrets: tuple[str, ...] = _knob(
        ("veena3-secrets",), "Comma list of Modal secret names (the service's TTS_* settings)."
    )
    model_subdir: str = _knob("Spark-TTS-0.5B", "Checkpoint directory inside the volume.")
    sr_subdir: str = _knob("ap_bwe/16kto48k", "AP-BWE directory inside the volume.")
    region: tuple[str, ...] = _knob((), "Comma list of regions, e.g. us-east; empty: anywhere.")
    vllm_cache_volume: str = _knob(
        "", "Volume for vLLM's compile cache (/root/.cache/vllm): faster cold starts; empty: none."
    )

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
        try:
            parse_forked_allowance(self.forked_state)
        except ValueError as exc:
            raise DeploymentConfigError(str(exc)) from None
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
    def variables(cls) -> dict[str, str]:
        """TTS_MODAL_<NAME> -> field name, for every field."""
        return {f"TTS_MODAL_{f.name.upper()}": f.name for f in fields(cls)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ModalConfig:
        env = os.environ if environ is None else environ
        known = sorted(name.removeprefix("TTS_MODAL_") for name in cls.variables())
        for key in sorted(env):  # a mistyped knob would otherwise deploy with the default, silently
            name = key.upper()
            if name.startswith("TTS_MODAL_") and name.removeprefix("TTS_MODAL_") not in known:
                close = difflib.get_close_matches(name.removeprefix("TTS_MODAL_"), known, n=1, cutoff=0.75)
                logger.warning(
                    "%s names no Modal setting and is ignored%s",
                    key,
                    f" (did you mean TTS_MODAL_{close[0]}?)" if close else "",
                )
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
            forked_state=tuple(n.lower() for n in _env_list(env, "TTS_MODAL_FORKED_STATE", "")),
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
            "TTS_MODAL_FORKED_STATE": ",".join(self.forked_state),
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
JOBS_PATH = "/jobs"  # long-form jobs' files (services/jobs), committed with the spool
# A Modal Volume keeps a container's writes only once committed, and has no cross-container file locks. So the
# container commits its spool every SPOOL_COMMIT_S (heartbeat first, WAL folded in: `RequestSpool.quiesced`) and once
# more at exit after the request log closed; another container adopts a spool only when its heartbeat is older than
# SPOOL_STALE_S. A hard kill (OOM) loses at most the last SPOOL_COMMIT_S of records; a clean exit loses none.
SPOOL_COMMIT_S = 5.0
SPOOL_STALE_S = 60.0
VLLM_CACHE_PATH = "/root/.cache/vllm"
# A job holder (`render_jobs`, one Modal input) returns this long before the input's limit cuts it, saying work was
# left, and the next holder is spawned: a cut input would cancel the chapter under way.
HOLD_MARGIN_S = 60
# Slowest sustained synthesis speed a full container is sized for, in characters of text per second of wall
# time (about real time under load: speech runs ~14-16 characters a second). The accepted text length is capped
# at timeout x this, so no accepted request can outlive its Modal input.
MIN_CHARS_PER_SECOND = 14
# ------------------------------------------------------------------------------------------------------------
# Container settings


def _env_is_set(environ: Mapping[str, str], field: str) -> bool:
    wanted = f"TTS_{field}".upper()
    return any(key.upper() == wanted for key in environ)


def check_container_settings(settings: Settings) -> None:
    """Refuse configurations that must not take traffic on Modal (raises DeploymentConfigError)."""
    if not settings.access.auth_enabled:
        raise DeploymentConfigError(
            "TTS_AUTH_ENABLED=false is refused on Modal: the endpoint is public. Remove it from the secret / "
            "environment (auth can only be switched off for local development)."
        )
    if (
        settings.access.key_backend == "static"
        and not settings.access.api_keys.strip()
        and settings.access.api_keys_file is None
    ):
        raise DeploymentConfigError(
            "no API keys configured: every request would get 401. Set TTS_API_KEYS (comma-separated) in the "
            "Modal secret, or TTS_KEY_BACKEND=postgres|supabase with TTS_DATABASE_URL or TTS_SUPABASE_URL/KEY."
        )
    if settings.access.key_backend == "postgres" and not settings.databases.database_url:
        raise DeploymentConfigError("TTS_KEY_BACKEND=postgres needs TTS_DATABASE_URL in the Modal secret")
    if settings.access.key_backend == "supabase" and not (
        settings.databases.supabase_url and settings.databases.supabase_key
    ):
        raise DeploymentConfigError("TTS_KEY_BACKEND=supabase needs TTS_SUPABASE_URL and TTS_SUPABASE_KEY")
    if settings.voices.voice_store == "file":
        raise DeploymentConfigError(
            "TTS_VOICE_STORE=file is refused on Modal: a container's files vanish when it stops and no other container "
            "sees them, so saved voices would be lost. Use postgres or supabase (or none: no saved voices)."
        )


def check_engine_room(settings: Settings, cfg: ModalConfig) -> None:
    """Refuse an engine that cannot run what one full container holds: past max_num_seqs vLLM queues requests, and
    a queued stream runs dry while admission counts it as served."""
    need = engine_seqs_for(cfg.max_inputs)
    if settings.llm.max_num_seqs < need:
        raise DeploymentConfigError(
            f"TTS_MAX_NUM_SEQS={settings.llm.max_num_seqs} is below what one container holds: "
            f"TTS_MODAL_MAX_INPUTS={cfg.max_inputs} requests x 2 generations each = {need}. Set TTS_MAX_NUM_SEQS to "
            f"{need} or more (or remove it: the container then sets {need}), or lower TTS_MODAL_MAX_INPUTS."
        )


def check_fleet_state(settings: Settings, cfg: ModalConfig) -> None:
    """With more than one container possible, refuse per-container stores that would fork (fleet.py), unless
    TTS_MODAL_FORKED_STATE accepts each by name; what is accepted is logged at start."""
    if cfg.max_containers <= 1:
        return
    allowed = parse_forked_allowance(cfg.forked_state)
    forks = forked_state(settings)
    refused = [f for f in forks if f.name not in allowed]
    if refused:
        lines = "; ".join(f"{f.name}: {f.what} (fix: {f.fix})" for f in refused)
        raise DeploymentConfigError(
            f"TTS_MODAL_MAX_CONTAINERS={cfg.max_containers} runs several containers, and these settings keep state "
            f"per container that would fork between them: {lines}. Or run one container "
            "(TTS_MODAL_MAX_CONTAINERS=1), or accept the fork by name in TTS_MODAL_FORKED_STATE="
            f"{','.join(f.name for f in refused)}."
        )
    for fork in forks:
        logger.warning(
            "forked state accepted by TTS_MODAL_FORKED_STATE: %s",
            fork.what,
            extra={"forked_state": fork.name, "fix": fork.fix, "max_containers": cfg.max_containers},
        )


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
        "request_log_spool_stale_s": SPOOL_STALE_S,
        "jobs_dir": JOBS_PATH,
    }
    overrides = {name: value for name, value in defaults.items() if not _env_is_set(env, name)}
    if cfg.snapshot == "gpu":
        overrides["vllm_sleep_mode"] = True  # vLLM must release its KV cache before the GPU snapshot
    settings = Settings(**overrides)
    if settings.voices.voice_store == "auto" and settings.resolved_voice_store == "file":
        # auto would keep voices in the container's own files (lost on scale-down, invisible to the others).
        logger.warning(
            "no database for the voice library: voices cannot be saved on this deployment (per-request "
            "cloning still works); set TTS_DATABASE_URL or TTS_SUPABASE_URL/KEY to keep them"
        )
        settings = settings.model_copy(update={"voice_store": "none"})
    if not _env_is_set(env, "max_num_seqs"):
        # Every input of a full container may run its generations at once (services/deployment/fleet.py).
        settings = settings.model_copy(update={"max_num_seqs": engine_seqs_for(cfg.max_inputs)})
    check_container_settings(settings)
    check_engine_room(settings, cfg)
    check_fleet_state(settings, cfg)
    longest = cfg.timeout * MIN_CHARS_PER_SECOND
    if settings.limits.max_text_chars > longest:
        logger.warning(
            "text limit lowered to what the Modal timeout allows",
            extra={
                "max_text_chars": longest,
                "configured": settings.limits.max_text_chars,
                "timeout_s": cfg.timeout,
            },
        )
        settings = settings.model_copy(update={"max_text_chars": longest})
    return settings


# ------------------------------------------------------------------------------------------------------------
# The service


class ContainerLifecycle:
    """What the Modal class does in its container, with Modal left out (so it is testable locally).

    prepare: settings (refusing a bad configuration), runtime and GPU fault detector; nothing loaded.
    load: loads and warms the runtime (the engine is built in a worker thread; its requests run on this loop);
    raises unless the runtime ended READY (a failed load or warm-up never serves, and is never snapshotted); for a
    GPU snapshot then puts vLLM to sleep (level 1: no KV cache, weights offloaded).
    resume: the input gate started (`set_slots`: the container's input slots follow admission's headroom,
    services/deployment/input_gate.py); after a restore, fresh randomness and (GPU snapshot) vLLM woken up.
    web: the FastAPI app around the runtime and the GPU fault detector; with `spawn_holder`, its job runner claims
    only inside a holder (services/deployment/job_holds.py).
    render_jobs: the holder's body (the class's `render_jobs` input): drains the job runner, returns whether work
    was left.
    stop: flush the request log, commit the spool's Volume a last time, close the metrics push (final push, group
    deleted) and shut the engine down (all safe after the app's own lifespan shutdown, which does the same).
    `volume_commit`: the spool Volume's `commit` (app.py); while the container serves, `load` starts a loop that
    refreshes the spool's heartbeat and commits every SPOOL_COMMIT_S.
    """

    def __init__(
        self,
        cfg: ModalConfig,
        *,
        runtime_factory: Callable[[Settings], Any] | None = None,
        app_factory: Any = None,  # callable(settings, runtime=, gpu_faults=) with a preload() method (app.py)
        stop_hook: Callable[[], object] | None = None,
        volume_commit: Callable[[], object] | None = None,
        commit_every_s: float = SPOOL_COMMIT_S,
        set_slots: Callable[[int], object] | None = None,
        spawn_holder: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.cfg = cfg
        self._spawn_holder = spawn_holder
        self.job_holds: JobHolds | None = None
        self._set_slots = set_slots
        self.input_gate: InputGate | None = None
        self._volume_commit = volume_commit
        self._commit_every_s = commit_every_s
        self._commit_task: asyncio.Task[Any] | None = None
        self._runtime_factory = runtime_factory
        self._app_factory = app_factory
        self._stop_hook = stop_hook
        self.settings: Settings | None = None
        self.runtime: Any = None
        self.detector: Any = None
        self.web_app: Any = None

    def prepare(self) -> None:
        self.settings = container_settings(self.cfg)  # first: a refused configuration fails before any import

        from services.deployment.runtime import ModelRuntime
        from services.pipeline.gpu_faults import GpuFaultDetector, modal_stop_fetching_inputs

        if self.cfg.snapshot != "off" and self._app_factory is not None:
            self._app_factory.preload()  # so the memory snapshot already holds the heavy imports

        self.runtime = (self._runtime_factory or ModelRuntime)(self.settings)
        if self.runtime.warmup_step is None:
            from services.deployment.pin_voices import warmup_step_for

            self.runtime.warmup_step = warmup_step_for(self.settings)
        self.detector = GpuFaultDetector(
            self.runtime, stop_hook=self._stop_hook or modal_stop_fetching_inputs
        )
        logger.info(
            "container configured",
            extra={
                "model_dir": str(self.settings.model.model_dir),
                "engine": self.settings.llm.engine,
                "snapshot": self.cfg.snapshot,
            },
        )

    async def load(self) -> None:
        if self._volume_commit is not None:
            self._commit_task = asyncio.get_running_loop().create_task(self._commit_loop())
        await self.runtime.start()
        state = str(getattr(self.runtime.state, "value", self.runtime.state))
        if state != "ready":
            # Anything but ready (failed, warmup_failed, ...) must not serve: raising keeps Modal from routing traffic
            # here and it retries with a fresh container. Checked before the sleep, so no snapshot holds the failure.
            raise RuntimeError(f"model loading ended {state}, not ready: {self.runtime.error}")
        if self.cfg.snapshot == "gpu":
            engine = self.runtime.engine
            if not engine.supports_sleep:
                raise DeploymentConfigError("TTS_MODAL_SNAPSHOT=gpu needs TTS_ENGINE=vllm (sleep / wake_up)")
            await self.runtime.sleep_engine()  # the same engine sleep as idle sleep (TTS_IDLE_SLEEP_S)
            logger.info("vLLM asleep for the GPU snapshot")

    async def resume(self) -> None:
        if self._set_slots is not None and self.input_gate is None:
            # After any restore, on the serving loop: the container's input slots follow admission's headroom.
            self.input_gate = InputGate(
                lambda: getattr(self.runtime, "admission", None),
                self._set_slots,
                open_slots=self.cfg.max_inputs,
            )
            self.input_gate.start()
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
            await self.runtime.wake_engine()
            logger.info("vLLM awake after restore")

    def web(self) -> Any:
        factory = self._app_factory
        if factory is None:  # services never import api: the Modal wiring hands the factory in
            raise RuntimeError("ContainerLifecycle.web needs app_factory (app.py passes api.create_app)")
        if self.web_app is not None:  # a holder may have asked first: one app per container
            return self.web_app
        web_app = factory(self.settings, runtime=self.runtime, gpu_faults=self.detector)
        self.web_app = web_app
        runner = self._job_runner()
        if runner is not None and self._spawn_holder is not None:
            self.job_holds = JobHolds(self._spawn_holder)
            runner.hold_with(self.job_holds.request)
        return web_app

    def _job_runner(self) -> Any:
        services = getattr(self.web_app.state, "services", None) if self.web_app is not None else None
        jobs = getattr(services, "jobs", None)
        return jobs.runner if jobs is not None else None

    async def render_jobs(self) -> bool:
        """One holder: render this container's claims until the queue has nothing for it; whether work was left.
        Starts the runner when the app's lifespan has not yet (a container whose first input is a holder)."""
        self.web()
        runner = self._job_runner()
        if runner is None:  # jobs disabled
            return False
        runner.start()
        return bool(await runner.drain(max_s=max(self.cfg.timeout - HOLD_MARGIN_S, self.cfg.timeout / 2)))

    def _spool(self) -> Any:
        services = getattr(self.web_app.state, "services", None) if self.web_app is not None else None
        return services.access.request_logger.spool if services is not None else None

    def commit_spool(self) -> None:
        """Heartbeat, then commit the Volume with the spool quiesced (no write half done, the WAL folded in)."""
        spool = self._spool()
        if spool is None or self._volume_commit is None:
            return
        spool.beat()
        with spool.quiesced():
            self._volume_commit()

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._commit_every_s)
            try:
                await asyncio.to_thread(self.commit_spool)
            except Exception:  # noqa: BLE001 - the next round tries again; a failed commit must not stop serving
                logger.exception("request-log spool commit failed")

    async def stop(self) -> None:
        if self._commit_task is not None:
            self._commit_task.cancel()
        if self.input_gate is not None:
            await self.input_gate.stop()
        if self.job_holds is not None:
            await self.job_holds.stop()
        services = getattr(self.web_app.state, "services", None) if self.web_app is not None else None
        request_log = services.access.request_logger if services is not None else None
        if request_log is not None:
            try:
                await request_log.close()
            except Exception:  # noqa: BLE001 - exiting anyway; say so
                logger.exception("request log flush failed at exit")
        if self._volume_commit is not None:
            try:  # the spool is closed (checkpointed, heartbeat zeroed): what is left survives the container
                await asyncio.to_thread(self._volume_commit)
            except Exception:  # noqa: BLE001 - exiting anyway; say so
                logger.exception("request-log spool commit failed at exit")
        # The lifespan already closed it (final push, group deleted); a second close does nothing.
        pusher = getattr(self.web_app.state, "metrics_pusher", None) if self.web_app is not None else None
        if pusher is not None:
            await pusher.aclose()
        if self.runtime is not None:
            await self.runtime.shutdown()
