"""Load and warm every model once, and answer what state the service is in.

The runtime owns the tokenizer, vocabulary layout, voices, LLM engine, BiCodec decoder and (optionally) AP-BWE,
and the one codec scheduler (services/device) through which every stream's decode and super-resolution windows reach
those two models while serving, with the admission that reads its headroom; and idle sleep (TTS_IDLE_SLEEP_S), which
frees the device while nothing is asked of it.
Loading is blocking and runs in worker threads at start-up (locally, and in Modal's `@modal.enter`), so the event
loop keeps answering health and readiness while models load.

Longer than 500 lines because it is the one owner of every model's lifecycle (load, warm, serve, idle sleep, shut
down): splitting it would hand the models to a second owner.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from audio.resample import prepare_output_filters
from core.align.rates import SpeakingRates
from core.checkpoint import CheckpointError, SparkCheckpoint, load_spark_checkpoint, load_sr_checkpoint
from core.numerics import apply_model_numerics
from core.voices import is_custom_voice_id
from services.deployment.idle_sleep import IdleSleep, device_busy, move_codec
from services.deployment.missing_package import note_missing_package
from services.device import telemetry as codec_telemetry
from services.device.admission_profiles import ADMISSION_PROFILES, AdmissionProfile
from services.device.calls import SchedulerPolicy
from services.device.carried import CarriedStreams, carried_for
from services.device.continuations import Continuations
from services.device.device_layout import profile_on, sharing_of
from services.device.thread_calls import ModelCallAbandoned, run_from_thread
from services.model_status import HealthReport, RuntimeState
from services.pipeline.resources import PipelineResources
from services.pipeline.speaker_vectors import SpeakerVectors
from shared import metrics
from shared.settings import APP_VERSION, Settings

if TYPE_CHECKING:
    from services.device.graphs import CodecGraphs

logger = logging.getLogger("services.deployment.runtime")


def freeze_startup_heap() -> None:
    """Move everything alive after loading and warm-up (~280k objects: torch, transformers, the app) out of the
    cyclic GC's reach. Otherwise a full collection walks them all: ~150 ms with every stream's event loop stopped
    (bench/bench_ttfa.py saw it in TTFA p95). They live as long as the process; refcounting still frees them."""
    gc.collect()
    gc.freeze()


def resolve_device(setting: str) -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


WarmupStep = Callable[["ModelRuntime"], Awaitable[None]]


class ModelRuntime:
    """Everything a synthesis request needs, loaded once.

    `warmup`: one request through the whole pipeline (services.pipeline.synthesis.warmup_pipeline), injected by whoever
    builds the runtime so this module does not depend on the pipeline it serves; None skips warm-up.
    `engine_factory` and `codec_runner_factory`: stand-ins for benchmarks and tests (bench/standin), called with the
    loaded runtime; the first builds the LLM engine (off the event loop) in place of `core.llm.create_engine`, the
    second the device runner every codec call goes through in place of the models. None when serving for real.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        warmup: WarmupStep | None = None,
        engine_factory: Callable[[ModelRuntime], Any] | None = None,
        codec_runner_factory: Callable[[ModelRuntime], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.warmup_step = warmup
        self.engine_factory = engine_factory
        self.codec_runner_factory = codec_runner_factory
        self.state = RuntimeState.STARTING
        self.error: str | None = None
        self.missing_package: str | None = None  # a package missing at start, named with its install command
        self.started_at = time.monotonic()
        self.device = resolve_device(settings.model.device)
        # Must happen before asyncio's worker threads exist: set_num_threads does not reach running threads.
        threads = settings.model.torch_threads or (1 if self.device == "cpu" else None)
        if threads:
            torch.set_num_threads(threads)
        # numpy's BLAS on one thread: its products here are small (the output resampler's, audio/polyphase.py), and
        # a pool of BLAS threads spinning between them doubled the API path's CPU per audio second on the
        # stand-in, on cores the event loop needs (docs/benchmarks.md, "The output resampler").
        threadpool_limits(limits=1, user_api="blas")
        # Process-wide float numerics of the codec and SR (TF32 off): once here, never per request.
        numerics = apply_model_numerics()
        logger.info("model numerics", extra=numerics)
        self.checkpoint: SparkCheckpoint | None = None
        self.tokenizer: Any = None
        self.layout: Any = None
        self.added_token_ids: frozenset[int] | None = None
        self.voices: Any = None
        # TTS_OPENAI_VOICE_MAP entries whose target is a custom (library) voice id: OpenAI name (casefolded) -> id.
        self.openai_custom_voices: dict[str, str] = {}
        self.engine: Any = None
        # The stand-in DeviceRunner the codec scheduler runs on instead of the models (`codec_runner_factory`).
        self.codec_runner: Any = None
        self.bicodec: Any = None
        self.sr: Any = None
        self.aligner: Any = None  # {language: core.align.ctc.CtcAligner} when TTS_ALIGN_METHOD=ctc
        # Each voice's measured speaking rate per key, kept across requests for timestamps.
        self.speaking_rates = SpeakingRates()
        # The one room that touches BiCodec and AP-BWE while serving (built once the models load), and admission.
        self.codec_scheduler: Any = None
        self.admission: Any = None
        self.continuations: Continuations | None = None
        # What start-up's CUDA graph capture did (CodecGraphs.status()); None without graphs (CPU, or switched off).
        self.codec_graph_status: dict[str, Any] | None = None
        self.sr_error: str | None = None
        self.model_version = settings.model.model_version or "unknown"
        self.load_seconds: float | None = None
        self.speaker_vectors: SpeakerVectors | None = None  # d-vectors per voice, made once BiCodec loads
        self._reference_encoder: Any = None
        self._reference_encoder_lock = threading.Lock()
        # TTS_IDLE_SLEEP_S: frees the device when idle (services/deployment/idle_sleep.py); None when off.
        self.idle_sleep: IdleSleep | None = None
        self._idle_task: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------------------- loading
    @property
    def is_demo(self) -> bool:
        return bool(self.checkpoint and self.checkpoint.is_demo)

    @property
    def demo_model_expected(self) -> bool | None:
        """For health while starting: the checkpoint's flag once read; before that True when no TTS_MODEL_DIR is
        set (the demo is what gets built), else None (not known until the directory is read)."""
        if self.checkpoint is not None:
            return self.checkpoint.is_demo
        return True if self.settings.model.model_dir is None else None

    @property
    def ready(self) -> bool:
        return self.state == RuntimeState.READY

    @property
    def state_name(self) -> str:
        return self.state.value

    @property
    def model_loaded(self) -> bool:
        return self.engine is not None and self.bicodec is not None

    @property
    def sr_ready(self) -> bool:
        return self.sr is not None

    def _model_dir(self) -> Path:
        if self.settings.model.model_dir is not None:
            return self.settings.model.model_dir
        from core.demo.checkpoint import build_demo_checkpoint

        return build_demo_checkpoint(self.settings.model.demo_dir, seed=self.settings.model.demo_seed)

    def load_models(self) -> None:
        """Blocking: validate the directory and load tokenizer, voices, BiCodec and AP-BWE (not the LLM engine)."""
        from transformers import AutoTokenizer

        from core.bicodec import BiCodecDecoder
        from core.tokens import VocabLayout
        from core.voices import VoiceRegistry

        started = time.perf_counter()
        self.state = RuntimeState.LOADING
        self.checkpoint = load_spark_checkpoint(self._model_dir())
        if self.checkpoint.is_demo:
            logger.warning(
                "Serving the DEMO checkpoint: random weights, the audio will be noise. "
                "Point TTS_MODEL_DIR at a Spark-TTS-0.5B directory for real speech."
            )
            self.model_version = self.settings.model.model_version or f"demo-{self.settings.model.demo_seed}"
        else:
            self.model_version = self.settings.model.model_version or f"spark-tts/{self.checkpoint.name}"
        metrics.DEMO_MODEL.set(1 if self.checkpoint.is_demo else 0)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.checkpoint.llm_dir))
        self.layout = VocabLayout.from_tokenizer(self.tokenizer)
        # Every added token (control markers, global/semantic ids, Qwen's own): user text may produce none.
        self.added_token_ids = frozenset(self.tokenizer.get_added_vocab().values())
        if self.checkpoint.voices_file is not None:
            self.voices = VoiceRegistry.from_file(self.checkpoint.voices_file)
        elif self.checkpoint.layout == "finetune":
            self.voices = VoiceRegistry.for_finetune(self.settings.voices.finetune_speakers.split(","))
        else:
            self.voices = VoiceRegistry.builtin()
        logger.info(
            "checkpoint resolved",
            extra={
                "layout": self.checkpoint.layout,
                "llm_dir": str(self.checkpoint.llm_dir),
                "bicodec_dir": str(self.checkpoint.bicodec_dir),
                "voices_file": str(self.checkpoint.voices_file) if self.checkpoint.voices_file else None,
                "voices": self.voices.ids,
                "sr_dir": str(self.settings.model.resolved_sr_dir),
            },
        )
        if self.settings.voices.openai_voice_map:
            # A custom (library) voice id is owned by one key: it is looked up per request (SpeechService.voice),
            # so only built-in targets go into the registry.
            mapped = {
                name.casefold(): target for name, target in self.settings.voices.openai_voice_map.items()
            }
            self.openai_custom_voices = {name: t for name, t in mapped.items() if is_custom_voice_id(t)}
            self.voices = self.voices.with_openai_voices(
                {
                    **self.voices.openai_overrides,
                    **{name: t for name, t in mapped.items() if name not in self.openai_custom_voices},
                }
            )
        self.bicodec = BiCodecDecoder.from_pretrained(self.checkpoint.bicodec_dir, device=self.device)
        self.speaker_vectors = SpeakerVectors(self.bicodec)
        self._load_sr()
        prepare_output_filters()  # every stream's resampler filter, designed here rather than on its first push
        self.build_codec_scheduler()
        if (
            self.settings.text.align_method == "ctc"
        ):  # a bad model directory stops start-up: timestamps were asked for
            from core.align.ctc import load_aligners

            self.aligner = load_aligners(self.settings.text.align_ctc_model, self.device)
            for aligner in self.aligner.values():  # forward passes run as the scheduler's device work
                aligner.run_forward = self._align_on_device
        self.load_seconds = time.perf_counter() - started

    def _align_on_device(self, forward: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        return run_from_thread(self.codec_scheduler, "align", forward)

    def build_codec_scheduler(self) -> None:
        """One `CodecScheduler` over the loaded models (replacing any earlier one), and the admission reading it.
        On a GPU, and for the device stand-in (which models one), the default policy (one call at a time, fixed shapes);
        on a CPU one call per core, no batch padding. Its planning loop starts on the serving loop (`start()`), or on
        the first window submitted."""
        from services.device.admission import Admission
        from services.device.background import BackgroundPolicy
        from services.device.key_share import CpuTurns, engine_step_gate
        from services.device.loop_lag import LoopLag
        from services.device.runner import ModelRunner
        from services.device.scheduler import CodecScheduler

        if self._serves_a_gpu():
            policy = SchedulerPolicy()
        else:
            policy = SchedulerPolicy.for_cpu(self.settings.codec.codec_cpu_calls or os.cpu_count() or 1)
        # The wave generator runs on each window's kept tokens and the loaded decoder's reach, not its whole context.
        policy = replace(policy, decode_reach=self.bicodec.wave_reach_tokens)
        old = self.codec_scheduler
        if old is not None:
            old.runner.close()
        codec = self.settings.codec
        profile = self.admission_profile
        runner = ModelRunner(
            self.bicodec,
            self.sr,
            threads=policy.max_inflight,
            graphs=self._capture_graphs(policy),
            call_seconds_read=profile.call_seconds_read,
        )
        background = BackgroundPolicy(
            share=codec.background_share, min_slack_s=codec.background_min_slack_ms / 1000.0
        )
        # On a CPU the codec's calls take turns between keys with the engine's steps (key_share.CpuTurns)
        turns = None if self._serves_a_gpu() else CpuTurns(lambda: engine_step_gate(self.engine))
        self.codec_scheduler = CodecScheduler(
            runner, policy, background=background, loop_lag=LoopLag(), turns=turns
        )
        # The LLM's pace counts per generating request; the engine is built after the codec, hence the late lookup.
        self.admission = (
            None
            if not self._admission_on()
            else Admission(
                self.codec_scheduler,
                max_wait_s=codec.admission_max_wait_ms / 1000.0,
                generating=lambda: self.engine.stepping_requests() if self.engine is not None else 0,
                carried=self._carried(),
                **profile.admission,
            )
        )
        # A key's next sentence continues its reply (continuations.py): only where admission could refuse it
        self.continuations = None
        if self.admission is not None:
            self.continuations = Continuations(
                self.codec_scheduler.clock, codec.admission_continue_ms / 1000.0
            )
            self.codec_scheduler.on_live_close = self.continuations.note_closed

    @property
    def admission_profile(self) -> AdmissionProfile:
        """Admission's settings and the codec seconds they read (`TTS_ADMISSION_PROFILE`), with the codec's cap
        from `TTS_ADMISSION_CODEC_SHARE` where it is set."""
        # read on the device the engine's layout gives (TTS_LLM_ENGINE_LAYOUT; services/device/device_layout.py)
        profile = profile_on(
            ADMISSION_PROFILES[self.settings.codec.admission_profile],
            sharing_of(self.settings.llm.llm_engine_layout, self.settings.llm.engine),
        )
        share = self.settings.codec.admission_codec_share
        if share is None:
            return profile
        return replace(profile, admission={**profile.admission, "max_codec_share": share})

    def _carried(self) -> CarriedStreams | None:
        """What this GPU is known to carry on its engine layout (TTS_ADMISSION_CARRIED; services/device/carried.py)."""
        gpu_name = None
        if self.device.startswith("cuda"):
            gpu_name = torch.cuda.get_device_name(self.device)
        sharing = sharing_of(self.settings.llm.llm_engine_layout, self.settings.llm.engine)
        return carried_for(self.settings.codec.admission_carried, gpu_name, sharing)

    def _admission_on(self) -> bool:
        mode = self.settings.codec.admission
        if mode != "auto":
            return mode == "on"
        return self._serves_a_gpu()

    def _serves_a_gpu(self) -> bool:
        """A GPU, or a stand-in device runner (a benchmark of what a GPU serves)."""
        return self.device.startswith("cuda") or self.codec_runner_factory is not None

    def _capture_graphs(self, policy: SchedulerPolicy) -> CodecGraphs | None:
        """On CUDA (unless switched off), the codec's call shapes captured as graphs (services/device/graphs.py)."""
        self.codec_graph_status = None
        if not (self.device.startswith("cuda") and self.settings.codec.codec_cuda_graphs):
            return None
        from services.device.graphs import capture_codec_graphs

        graphs = capture_codec_graphs(
            self.bicodec,
            self.sr,
            policy,
            sr_precision=self.settings.codec.codec_sr_precision,
            budget_s=self.settings.codec.codec_graph_budget_s,
            # a profile that reads a call's own seconds needs each graph's replay timed alone
            time_replays=self.admission_profile.call_seconds_read == "own",
        )
        self.codec_graph_status = graphs.status() if graphs is not None else None
        return graphs

    def _load_sr(self) -> None:
        if not self.settings.model.sr_enabled:
            self.sr_error = "disabled by TTS_SR_ENABLED=false"
            metrics.SR_READY.set(0)
            return
        sr_dir = self.settings.model.resolved_sr_dir
        try:
            from core.apbwe import SuperResolution

            load_sr_checkpoint(sr_dir)
            cuda = self.device.startswith(
                "cuda"
            )  # a CPU serves fp32: its reduced precisions are only emulated
            self.sr = SuperResolution.from_pretrained(
                sr_dir,
                device=self.device,
                precision=self.settings.codec.codec_sr_precision if cuda else "fp32",
                fused=self.settings.codec.codec_sr_fused and cuda,
            )
            self.sr_error = None
        except (CheckpointError, RuntimeError, OSError, KeyError, ValueError) as exc:
            self.sr = None
            self.sr_error = str(exc)
            logger.warning(
                "AP-BWE super-resolution unavailable; 48 kHz requests are resampled",
                extra={"reason": str(exc)},
            )
        metrics.SR_READY.set(1 if self.sr is not None else 0)

    async def create_engine(self) -> None:
        from core.llm import create_engine

        assert self.checkpoint is not None
        if self.codec_runner_factory is not None:
            # Every decode and AP-BWE window goes through the scheduler's runner, so this one swap moves them all to
            # the stand-in. The loaded models stay for what the pipeline asks them directly (d-vectors, sizes).
            self.codec_runner = self.codec_runner_factory(self)
            self.codec_scheduler.runner = self.codec_runner
        # Off the event loop, whichever engine: building vLLM takes from seconds (CPU) to minutes (GPU compile), and
        # health and readiness must answer meanwhile. vLLM's AsyncLLM built without a running loop starts its output
        # handler on the loop of its first request (the serving loop), which is where every request then runs.
        if self.engine_factory is not None:
            self.engine = await asyncio.to_thread(self.engine_factory, self)
        else:
            self.engine = await asyncio.to_thread(
                create_engine, self.settings.llm.engine, self.checkpoint.llm_dir, self.settings
            )

    async def start(self) -> None:
        """Load everything, warm up, and mark ready. Failures are recorded, not raised (health reports them)."""
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self.load_models)
            self.codec_scheduler.start()  # on the serving loop
            await self.create_engine()
            metrics.MODEL_LOADED.set(1)
            if self.settings.deployment.warmup and self.warmup_step is not None:
                self.state = RuntimeState.WARMING
                try:
                    await self.warmup()
                except Exception as exc:  # noqa: BLE001 - stay up and say why (a restart would fail the same way)
                    self.error = f"warm-up failed: {exc.__class__.__name__}: {exc}"
                    logger.exception("warm-up failed; the service stays up and reports not ready")
                    self.missing_package = note_missing_package(exc, "warm-up")
                    # the state last: a reader that sees it failed (health, a test's thread) finds why already set
                    self.state = RuntimeState.WARMUP_FAILED
                    return
            self._start_idle_sleep()
            freeze_startup_heap()
            self.load_seconds = time.perf_counter() - started
            metrics.MODEL_LOAD_SECONDS.set(self.load_seconds)
            self.state = RuntimeState.READY
            logger.info(
                "runtime ready",
                extra={
                    "load_seconds": round(self.load_seconds, 2),
                    "model_version": self.model_version,
                    "engine": self.settings.llm.engine,
                    "device": self.device,
                    "sr_ready": self.sr_ready,
                },
            )
        except Exception as exc:  # noqa: BLE001 - any load failure must surface in health, not crash the server
            self.error = f"{exc.__class__.__name__}: {exc}"
            metrics.MODEL_LOADED.set(0)
            logger.exception("model loading failed")
            self.missing_package = note_missing_package(exc, "model loading")
            self.state = RuntimeState.FAILED  # last, as for warm-up

    async def warmup(self) -> None:
        """One short generation through the whole pipeline, so the first user request is not the slow one."""
        if self.warmup_step is not None:
            await self.warmup_step(self)

    def pipeline_resources(self) -> PipelineResources:
        """What a synthesis job uses, as one typed bundle (the pipeline never holds the runtime). Built per job, so
        it always names the current engine, scheduler and settings; the objects inside are shared."""
        if self.engine is None or self.codec_scheduler is None or self.speaker_vectors is None:
            raise RuntimeError(f"the models are not loaded (state: {self.state.value})")
        return PipelineResources(
            settings=self.settings,
            model_version=self.model_version,
            engine=self.engine,
            tokenizer=self.tokenizer,
            layout=self.layout,
            added_token_ids=self.added_token_ids or frozenset(),
            voices=self.voices,
            openai_custom_voices=self.openai_custom_voices,
            bicodec=self.bicodec,
            sr=self.sr,
            scheduler=self.codec_scheduler,
            admission=self.admission,
            continuations=self.continuations,
            aligner=self.aligner,
            speaker_vectors=self.speaker_vectors,
            idle=self.idle_sleep,
            speaking_rates=self.speaking_rates,
        )

    # ----------------------------------------------------------------------------- idle sleep
    def _start_idle_sleep(self) -> None:
        idle_s = self.settings.deployment.idle_sleep_s
        if idle_s > 0:
            self.idle_sleep = IdleSleep(
                idle_s,
                sleep=self.sleep_device,
                wake=self.wake_device,
                busy=lambda: device_busy(self.engine, self.codec_scheduler),
            )
            self._idle_task = asyncio.get_running_loop().create_task(self.idle_sleep.run(), name="idle-sleep")

    async def sleep_engine(self) -> None:
        """vLLM's level-1 sleep, for idle sleep and Modal's GPU snapshot; the transformers engine keeps its weights."""
        if self.engine.supports_sleep:
            await self.engine.sleep(1)

    async def wake_engine(self) -> None:
        if self.engine.supports_sleep:
            await self.engine.wake_up()

    async def sleep_device(self) -> None:
        """Idle sleep: the engine sleeps, then the codec models leave the device as the scheduler's own work."""
        await self.sleep_engine()
        await self.codec_scheduler.run_model_call("move", partial(self._move_codec, "cpu"))

    async def wake_device(self) -> None:
        await self.codec_scheduler.run_model_call("move", partial(self._move_codec, self.device))
        await self.wake_engine()

    def _move_codec(self, device: str) -> None:
        models = (self.bicodec, self.sr, self.aligner, self._reference_encoder)
        runner = self.codec_scheduler.runner
        if move_codec(models, runner, device) and self.codec_graph_status is not None:
            runner.graphs = self._capture_graphs(self.codec_scheduler.policy)  # the models' new addresses

    # ----------------------------------------------------------------------------- voice cloning
    @property
    def cloning_unavailable_reason(self) -> str | None:
        """None when reference audio can be encoded here; otherwise why not (names the missing file)."""
        from core.clone import cloning_unavailable_reason

        if self.checkpoint is None:
            return "the model is not loaded"
        return cloning_unavailable_reason(self.checkpoint.root)

    def encode_reference(
        self, samples: Any, *, semantic: bool = True, stop: threading.Event | None = None
    ) -> Any:
        """Blocking (run it in a worker thread): 16 kHz reference samples -> `core.clone.ReferenceTokens`. `stop`:
        set when the caller abandons the encode; checked between stages (`core.clone.EncodeAbandoned`).

        The encoder loads on first use (wav2vec2 is 1.2 GB; serving stored voices never needs it), once, under a
        lock. Raises `core.clone.CloningUnavailable` when the checkpoint cannot encode."""
        from core.clone import CloningUnavailable, EncodeAbandoned, ReferenceEncoder

        with self._reference_encoder_lock:
            if self._reference_encoder is None:
                if self.checkpoint is None:
                    raise CloningUnavailable("the model is not loaded")
                # from_pretrained checks the files (cloning_unavailable_reason) and every tensor it reads.
                started = time.perf_counter()
                self._reference_encoder = ReferenceEncoder.from_pretrained(
                    self.checkpoint.root, device=self.device
                )
                logger.info(
                    "reference encoder loaded",
                    extra={"load_seconds": round(time.perf_counter() - started, 2)},
                )
            encoder = self._reference_encoder
        # The encoder loads outside the scheduler (seconds, once); each encode is the scheduler's device work.
        try:
            return run_from_thread(
                self.codec_scheduler,
                "reference",
                partial(encoder.encode, samples, semantic=semantic, stop=stop),
                stop=stop,
            )
        except ModelCallAbandoned as exc:
            raise EncodeAbandoned(str(exc)) from None

    def mark_unhealthy(self, reason: str) -> None:
        self.state = RuntimeState.UNHEALTHY
        self.error = reason
        logger.error("runtime marked unhealthy", extra={"reason": reason})

    async def shutdown(self) -> None:
        idle_task, self._idle_task = self._idle_task, None
        if idle_task is not None:
            idle_task.cancel()
            if idle_task.get_loop() is asyncio.get_running_loop():  # a test may shut down from another loop
                await asyncio.gather(idle_task, return_exceptions=True)
        engine, self.engine = self.engine, None  # idempotent: Modal's exit and the app lifespan both call it
        if self.state == RuntimeState.READY:
            self.state = RuntimeState.STOPPED
        if engine is not None:
            try:
                await engine.shutdown()
            except Exception:  # noqa: BLE001 - shutdown is best effort
                logger.exception("engine shutdown failed")
        scheduler = self.codec_scheduler
        if scheduler is not None:
            await scheduler.aclose()  # windows still waiting fail; the device thread is kept for a later loop

    # ----------------------------------------------------------------------------- health
    def codec_snapshot(self, limit: int) -> dict[str, Any] | None:
        """The codec scheduler's figures for the admin route; None before the models load."""
        if self.codec_scheduler is None:
            return None
        return codec_telemetry.snapshot(self.codec_scheduler, self.admission, limit=limit)

    def refresh_codec_gauges(self) -> None:
        codec_telemetry.refresh_gauges(self.codec_scheduler, self.admission)

    def health(self) -> HealthReport:
        if self.state == RuntimeState.READY:
            status = "degraded" if (self.sr is None and self.settings.model.sr_enabled) else "healthy"
        elif self.state in (RuntimeState.FAILED, RuntimeState.UNHEALTHY, RuntimeState.STOPPED):
            status = "unhealthy"
        else:
            status = "degraded"  # loading, warming, or warm-up failed: alive (no restart loop), not ready
        return HealthReport(
            status=status,
            state=self.state.value,
            model_loaded=self.model_loaded,
            model_version=self.model_version,
            demo_model=self.demo_model_expected,
            sr_ready=self.sr_ready,
            sr_error=self.sr_error,
            engine=self.settings.llm.engine,
            device=self.device,
            gpu_available=torch.cuda.is_available(),
            uptime_seconds=round(time.monotonic() - self.started_at, 3),
            app_version=APP_VERSION,
            codec_graphs=self.codec_graph_status,
            error=self.error,
            idle_sleep=None if self.idle_sleep is None else self.idle_sleep.state.value,
        )
