"""`POST /v1/audio/speech`'s body, OpenAI's fields with this service's extensions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from api.http.fields import (
    INSTRUCTIONS_DESCRIPTION,
    LATENCY_DESCRIPTION,
    MAX_TEXT_CHARS,
    SPEED_DESCRIPTION,
    IgnoredFields,
    LanguageField,
    Latency,
    SamplingFields,
    Speed,
    check_text,
)
from api.pronunciation_schemas import LexiconField
from api.protocols.openai.models import OpenAIModel
from api.stitching import StitchingFields
from api.voice_attributes import VoiceAttributeFields
from processing.voice_description import VoiceAttributes, VoiceDescription, describe_voice
from services.pipeline.speech import SpeechRequest
from shared.settings import Settings

# OpenAI's speech endpoint answers 24 kHz for every format; clients of `pcm` assume it.
OPENAI_SAMPLE_RATE = 24_000


class OpenAIVoiceRef(BaseModel):
    """Current OpenAI SDKs may send `voice` as an object: `{"id": "alloy"}`."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(..., min_length=1, max_length=128)


class OpenAISpeechRequest(
    SamplingFields, StitchingFields, LanguageField, LexiconField, VoiceAttributeFields, IgnoredFields
):
    """`POST /v1/audio/speech`, OpenAI-compatible, plus this service's sampling fields (`seed`, `temperature`,
    `top_k`, `top_p`, `max_tokens`, `repetition_penalty`), `stream`, `latency`, `language` and the stitching fields
    (`previous_request_ids`, `previous_text`, `next_text`); other unknown fields are ignored and named in
    X-Ignored-Fields, as on `/v1/tts/generate`."""

    model_config = ConfigDict(extra="allow")

    model: OpenAIModel = Field(
        "spark-tts", max_length=128, description="spark-tts, tts-1, tts-1-hd or gpt-4o-mini-tts (one model)."
    )
    input: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS, description="Text to speak.")
    voice: str | OpenAIVoiceRef | None = Field(
        None, description='Voice id, alias or OpenAI voice name (alloy, ash, ...), or an object {"id": ...}.'
    )
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = Field(
        "mp3", description="Audio format."
    )
    speed: Speed = Field(1.0, description=SPEED_DESCRIPTION)
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: raw bytes; sse: speech.audio.delta events."
    )
    stream: bool | None = Field(
        None,
        description="(An extension.) true: chunked bytes as they are made; false: one complete file. Default: "
        "a complete file for wav (exact RIFF sizes), streamed for every other format.",
    )
    instructions: str | None = Field(None, max_length=4096, description=INSTRUCTIONS_DESCRIPTION)
    latency: Latency | None = Field(
        None, description=LATENCY_DESCRIPTION + " (An extension to OpenAI's API.)"
    )
    timestamps: Literal["word", "character"] | None = Field(
        None,
        description="With stream_format=sse: `speech.timestamps` events before the audio they describe "
        "(an extension; OpenAI clients skip unknown event types).",
    )

    @field_validator("timestamps")
    @classmethod
    def _timestamps(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("stream_format") != "sse":
            raise PydanticCustomError("conflict", "timestamps travel as SSE events; send stream_format='sse'")
        return value

    @field_validator("input")
    @classmethod
    def _input(cls, value: str) -> str:
        return check_text(value, "input")

    @field_validator("voice")
    @classmethod
    def _voice(cls, value: str | OpenAIVoiceRef | None) -> str | OpenAIVoiceRef | None:
        if isinstance(value, str) and not 1 <= len(value) <= 128:
            raise ValueError("must be 1-128 characters")
        return value

    @property
    def voice_name(self) -> str | None:
        return self.voice.id if isinstance(self.voice, OpenAIVoiceRef) else self.voice

    @property
    def streamed(self) -> bool:
        """Bytes as they come (what OpenAI clients read), except a wav nobody asked to stream: that is one complete
        file whose header carries exact sizes, so readers such as Python's `wave` see its real length."""
        if self.stream_format == "sse":
            return True
        return self.stream if self.stream is not None else self.response_format != "wav"

    def described(self) -> VoiceDescription | None:
        """What `instructions` says about the voice (None without instructions)."""
        return None if self.instructions is None else describe_voice(self.instructions)

    def requested_attributes(self) -> VoiceAttributes | None:
        """The fields' attributes over those `instructions` names."""
        fields = VoiceAttributes(self.gender, self.pitch, self.speed_level)
        described = self.described()
        merged = fields if described is None else fields.merged(described.attributes)
        return merged if merged.named else None

    def to_speech_request(self, settings: Settings) -> SpeechRequest:
        """At 24 kHz (as OpenAI answers), with the deployment's sampling defaults under the request's fields."""
        return SpeechRequest(
            text=self.input,
            voice=self.voice_name,
            voice_attributes=self.requested_attributes(),
            audio_format=self.response_format,
            sample_rate=OPENAI_SAMPLE_RATE,
            sampling=self.to_sampling(settings),
            stream=self.streamed,
            speed=None if self.speed == 1.0 else self.speed,
            text_field="input",
            voice_field="voice",
            latency=self.latency,
            timestamps=self.timestamps,
            lexicon=self.to_lexicon(),
            **self.stitching(),
        )
