"""The LLM engine interface: prompt token ids in, a stream of new token ids out.

Two backends implement it: `TransformersEngine` (transformers_engine.py; CPU or a single GPU, no
vLLM needed) and `VLLMEngine` (vllm_engine.py; vLLM `AsyncLLM`, imported lazily). Callers depend
only on `LLMEngine`, `SamplingConfig` and `create_engine` (core/llm/__init__.py).

Stream contract (both backends):
- each item is a non-empty list of ids generated since the previous item (a "delta");
- a generated stop id ends the stream and is included as its last id (as vLLM reports it);
- the stream ends after `max_tokens` ids at most;
- closing the iterator (`aclose()`) or cancelling the consuming task aborts the generation, and so
  does `await engine.abort(request_id)` from elsewhere (the stream then just ends);
- `active_requests()` holds an id from the first step until its generation has really stopped;
  `stepping_requests()` counts those the engine steps now (less any held back by their pace line,
  core/llm/engine_pace.py: what admission's LLM pace divides by);
- a request id may only be active once at a time (ValueError otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from core.llm.engine_pace import EnginePace

if TYPE_CHECKING:
    from shared.settings import Settings

logger = logging.getLogger(__name__)

EngineKind = Literal["transformers", "vllm", "onnx"]

# Below this temperature sampling is greedy (vLLM uses the same threshold).
GREEDY_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling for one request. Always passed explicitly: checkpoint generation defaults are never used.

    `top_k` 0 (or -1) and `top_p` 1.0 disable those filters; `temperature` 0 is greedy;
    `repetition_penalty` 1.0 is off; `seed` None draws fresh randomness per request.
    """

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    max_tokens: int = 3000
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)
    # Restrict sampling to these ids (None: the whole vocabulary). Clone-mode generation allows only semantic
    # tokens, their start marker and the stop ids, so no stray text or control token can enter the stream.
    allowed_token_ids: tuple[int, ...] | None = None
    # The prefix cache's scope (vLLM's cache_salt): prompts under different salts never share cached blocks, so a
    # prompt built from one key's recording is not answered faster for another key that sends the same one. None:
    # shared (built-in voices, whose prompts every key may use). Engines without a prefix cache ignore it.
    cache_salt: str | None = None
    # Whose work this is (the API key id, None without keys). An engine that runs one step at a time shares its
    # steps fairly between owners before requests (core/llm/step_gate.py); batching engines ignore it.
    owner: str | None = None
    # The request's class (services/device/work_class.py): background generation (long-form jobs) yields to live
    # generation where the engine can rank requests (vLLM's priority scheduling; the transformers engine's turns).
    work_class: Literal["live", "background"] = "live"
    # Hold this request near real time in the engine (core/llm/engine_pace.py; TTS_LLM_PACE_LEAD_IDS): live requests
    # whose audio is streamed. None runs free; an engine without a paced scheduler ignores it.
    pace: EnginePace | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < -1:
            raise ValueError(f"top_k must be -1, 0 (off) or a positive count, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        # Accept any iterable of ints (a list from JSON, a set) but store a hashable tuple.
        object.__setattr__(self, "stop_token_ids", tuple(int(i) for i in self.stop_token_ids))
        if self.allowed_token_ids is not None:
            if not self.allowed_token_ids:
                raise ValueError("allowed_token_ids must not be empty (None allows every id)")
            object.__setattr__(self, "allowed_token_ids", tuple(int(i) for i in self.allowed_token_ids))

    @classmethod
    def with_defaults(cls, settings: Settings, **given: float | int | None) -> SamplingConfig:
        """A request's sampling: the fields it gave, the deployment's defaults (TTS_DEFAULT_*) for the rest."""
        defaults = settings.sampling
        values: dict[str, Any] = {
            "temperature": defaults.default_temperature,
            "top_k": defaults.default_top_k,
            "top_p": defaults.default_top_p,
            "max_tokens": defaults.default_max_tokens,
            "repetition_penalty": defaults.default_repetition_penalty,
        }
        values.update({name: value for name, value in given.items() if value is not None})
        return cls(**values)

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE or self.top_k == 1


@runtime_checkable
class LLMEngine(Protocol):
    name: str

    def stream(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str
    ) -> AsyncGenerator[list[int], None]:
        """Yield lists of new token ids; closing or cancelling the iterator aborts generation."""
        ...

    async def abort(self, request_id: str) -> None: ...

    def active_requests(self) -> set[str]: ...

    def stepping_requests(self) -> int:
        """Active requests the engine steps now (held-back paced ones counted out)."""
        ...

    async def shutdown(self) -> None: ...

    @property
    def supports_sleep(self) -> bool:
        """Whether `sleep`/`wake_up` free and restore GPU memory (vLLM); a GPU memory snapshot needs it."""
        ...

    async def sleep(self, level: int = 1) -> None:
        """Free GPU memory (level 1: KV cache dropped, weights offloaded); NotImplementedError where unsupported."""
        ...

    async def wake_up(self, tags: list[str] | None = None) -> bool: ...


def checked_prompt(prompt_token_ids: list[int], *, closed: bool, vocab_size: int | None = None) -> list[int]:
    """The checks every backend makes before generating: engine open, prompt non-empty and in the vocabulary."""
    if closed:
        raise RuntimeError("the LLM engine is shut down")
    prompt = [int(i) for i in prompt_token_ids]
    if not prompt:
        raise ValueError("prompt_token_ids is empty")
    if vocab_size is not None:
        bad = [i for i in prompt if not 0 <= i < vocab_size]
        if bad:
            raise ValueError(f"prompt ids outside the vocabulary [0, {vocab_size}): {bad[:5]}")
    return prompt


def check_dtype(dtype: str) -> str:
    """Normalise a dtype name; refuse float16, which breaks the Spark LLM
    (docs/reference/spark-tts.md#checkpoint-layout)."""
    name = str(dtype).removeprefix("torch.").lower()
    if name in ("float16", "half", "fp16"):
        raise ValueError(
            "float16 is refused: the Spark-TTS LLM produces garbage in fp16; use bfloat16 or float32"
        )
    aliases = {"fp32": "float32", "float": "float32", "bf16": "bfloat16"}
    name = aliases.get(name, name)
    if name not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"unsupported LLM dtype {dtype!r}; accepted: auto, float32, bfloat16")
    return name


def resolve_device(device: str) -> str:
    """`auto` -> cuda when a GPU is visible, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# bfloat16 needs compute capability 8.0 (Ampere); vLLM refuses it below (T4 7.5, V100 7.0, both offered by Modal).
BF16_MIN_CAPABILITY = (8, 0)


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto` -> bfloat16 on a GPU that has it, else float32 (bf16 on CPU is slow and crashed vLLM-CPU, spec B4).

    On a card below compute capability 8.0 bfloat16 (asked or automatic) becomes float32: float16, the only other
    half type, breaks the Spark LLM (check_dtype). The choice is logged when the card decides it."""
    name = check_dtype(dtype)
    if not str(device).startswith("cuda"):
        return "float32" if name == "auto" else name
    if name == "float32":
        return name
    import torch

    capability = tuple(torch.cuda.get_device_capability(device))
    if capability >= BF16_MIN_CAPABILITY:
        return "bfloat16"
    card = f"{torch.cuda.get_device_name(device)} (compute capability {capability[0]}.{capability[1]})"
    log = logger.info if name == "auto" else logger.warning
    log(
        "LLM dtype float32: %s has no bfloat16 and float16 breaks the Spark LLM%s",
        card,
        "" if name == "auto" else "; TTS_LLM_DTYPE=bfloat16 overridden",
    )
    return "float32"
