"""What the synthesis pipeline uses, as one typed bundle, and the small interfaces it reaches other rooms through.

The runtime (services/deployment/runtime.py) loads the models and builds a `PipelineResources` for each job
(its `pipeline_resources()`); the pipeline never sees the runtime itself, only `ModelSource`: whether the
models are ready, and the bundle once they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from core.align.ctc import CtcAligner
    from core.align.rates import SpeakingRates
    from core.apbwe import SuperResolution
    from core.bicodec import BiCodecDecoder
    from core.llm.base import LLMEngine
    from core.tokens import VocabLayout
    from core.voices import VoiceRegistry
    from services.device.admission import Admission
    from services.device.continuations import Continuations
    from services.device.scheduler import CodecScheduler
    from services.pipeline.speaker_vectors import SpeakerVectors
    from shared.settings import Settings


@dataclass(frozen=True)
class PipelineResources:
    """Everything one synthesis job reads: the loaded models, the device's scheduler and admission, the settings.

    A snapshot taken when the job is made; the objects inside are shared and long-lived."""

    settings: Settings
    model_version: str
    engine: LLMEngine
    tokenizer: PreTrainedTokenizerBase
    layout: VocabLayout
    added_token_ids: frozenset[int]  # every added token: user text may produce none of them
    voices: VoiceRegistry
    # TTS_OPENAI_VOICE_MAP entries whose target is a custom (library) voice id: OpenAI name (casefolded) -> id.
    openai_custom_voices: Mapping[str, str]
    bicodec: BiCodecDecoder  # read for its sizes (hop, codebook); its calls go through `scheduler`
    sr: SuperResolution | None  # AP-BWE, when loaded
    scheduler: CodecScheduler
    admission: Admission | None  # None where admission is off (CPU by default)
    aligner: Mapping[str, CtcAligner] | None  # TTS_ALIGN_METHOD=ctc: {language: aligner}
    speaker_vectors: SpeakerVectors
    # Idle sleep (TTS_IDLE_SLEEP_S), None when off: requests feed its timer and wait for its wake.
    idle: IdleGate | None = None
    # Each voice's speaking rate measured on its earlier output (timestamps start a stream from it); None: not kept.
    speaking_rates: SpeakingRates | None = None
    # A key's next sentence within a reply, admitted like the stream it continues (None: admission is off).
    continuations: Continuations | None = None


class IdleGate(Protocol):
    """Idle sleep as the pipeline sees it (services/deployment/idle_sleep.py, wired in by the runtime): `awake` is a
    plain attribute read, so the request path pays one check while awake."""

    @property
    def awake(self) -> bool: ...

    def touch(self) -> None:
        """A request or a socket message arrived: the idle timer starts again."""

    async def wake(self) -> float | None:
        """Wait until awake: the milliseconds waited (None: it was awake). RuntimeError when the wake failed."""


class ModelSource(Protocol):
    """Where the pipeline gets its resources: ready or not, and the bundle once ready (the runtime)."""

    @property
    def ready(self) -> bool: ...

    @property
    def state_name(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    def pipeline_resources(self) -> PipelineResources: ...
