"""What one synthesis job is asked for (`SynthesisRequest`) and the voices it speaks in (`Speaker`): the values the
routes, the socket sessions and the job (services/pipeline/synthesis.py) share."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.llm import SamplingConfig
from core.streaming import LatencyPreference
from services.device.work_class import WorkClass
from services.pipeline.audio_output import NATIVE_RATE

if TYPE_CHECKING:
    from core.voices import Voice
    from processing.lexicon import Lexicon
    from processing.tags import UnknownTags
    from services.pipeline.timestamps import TimestampsKind

# The one sampling type from request schema to engine: a request's SamplingConfig carries what the user asked
# for (defaults merged by `SamplingConfig.with_defaults`); each text chunk then gets its token budget and stop ids.
SamplingOptions = SamplingConfig


@dataclass(frozen=True)
class SynthesisRequest:
    request_id: str
    text: str
    voice: Voice
    sampling: SamplingOptions
    audio_format: str = "wav"
    sample_rate: int = NATIVE_RATE
    bitrate: int | None = None  # compressed formats: bits per second; None: the encoder's default
    want_sr: bool = False
    stream: bool = True
    # Streamed as it is made but read whole before it plays (Cartesia's `/tts/bytes`: Pipecat reads the body whole),
    # so it is not paced to playback: paced, its last byte came a few seconds before its audio's end.
    read_whole: bool = False
    normalize: bool = True
    chunking: bool = True
    unknown_tags: UnknownTags = "strip"
    lexicon: Lexicon | None = None  # alias rules (processing/lexicon.py) for the text the job plans
    ssml: bool = False  # a socket utterance whose text is SSML (services/sessions/utterance.py)
    latency: LatencyPreference = (
        "balanced"  # the first chunk's schedule (core.streaming.StreamingConfig.for_latency)
    )
    normalize_verbose: bool = False  # hand the normalised text back to the client (header / WebSocket events)
    timestamps: TimestampsKind | None = (
        None  # opt-in: TimestampsEvent items travel with the audio (stream_events)
    )
    time_stretch: float = (
        1.0  # tempo change applied to the 16 kHz audio (core.voices.time_stretch_for); 1.0: none
    )
    # The engine's prefix-cache scope for this request's prompts (SamplingConfig.cache_salt): the key, for a voice
    # built from that key's recordings (custom, reference, a stitched tail); None: shared.
    cache_scope: str | None = None
    key_id: str | None = (
        None  # the API key it serves: its codec stream counts toward that key's share (admission)
    )
    # `[voice:NAME]` segments: the voice of each name in the plan's `chunk_voices` (names resolving to one voice share
    # one object: one speaker). A chunk whose name is None or absent is spoken in `voice`.
    segment_voices: Mapping[str, Voice] = field(default_factory=dict)
    # live, or background (long-form jobs): a background job's codec stream and engine requests take only what live
    # streams leave (services/device/background.py), and admission never counts or paces it
    work_class: WorkClass = "live"

    @property
    def paced(self) -> bool:
        """Played as it arrives: held near real time (the job's pacing, the engine's lead) and timed by playback."""
        return self.stream and not self.read_whole


class Speaker:
    """One voice of a job: its 32 global tokens once known (the voice's own, or the model's from its first chunk),
    then fixed for every later chunk it speaks, and its d-vector for the decoder."""

    def __init__(self, voice: Voice) -> None:
        self.voice = voice
        self.global_tokens: tuple[int, ...] | None = (
            tuple(voice.global_tokens) if voice.global_tokens else None
        )
        self.ready = asyncio.Event()  # the global tokens are known
        if self.global_tokens is not None:
            self.ready.set()
        self.d_vector: Any = None

    def learn(self, global_tokens: tuple[int, ...]) -> None:
        if self.global_tokens is None:
            self.global_tokens = global_tokens
            self.ready.set()
