"""Cartesia's wire vocabulary: the one client message kind (a generation request, or a cancel), raw output
formats, and the error body of its HTTP routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http.fields import MAX_TEXT_CHARS, SUPPORTED_RATES, Speed, reject_control_characters
from api.protocols.common import parse_message
from api.voice_attributes import Level
from processing.voice_description import VoiceAttributes, attributes_or_none

MAX_CONTEXTS = 5  # unfinished contexts per socket
# How long text without a sentence end waits before it is spoken anyway (Cartesia's default; at most 5000).
DEFAULT_MAX_BUFFER_DELAY_MS = 3000
# A socket with no message either way lives this long, as Cartesia's own do (LiveKit's pool keeps one 300 s): closing
# sooner breaks the pool's next turn. The per-key connection cap (TTS_WS_MAX_CONNECTIONS_PER_KEY) bounds how many
# idle sockets one key holds.
IDLE_TIMEOUT_S = 300.0


class Voice(BaseModel):
    """`{"mode": "id", "id": ...}`, optionally with `gender`, `pitch`, `speed_level` (an extension: a voice created
    from Spark-TTS's labels, the rest from the voice `id` names)."""

    model_config = ConfigDict(extra="ignore")
    mode: Literal["id"] = "id"  # embeddings are not supported
    id: str = Field(..., min_length=1, max_length=128)
    gender: Literal["female", "male"] | None = None
    pitch: Level | None = None
    speed_level: Level | None = None

    def attributes(self) -> VoiceAttributes | None:
        return attributes_or_none(self.gender, self.pitch, self.speed_level)


class Rate(BaseModel):
    """`sample_rate`, one of ours (shared by the WebSocket's and /tts/bytes' output formats)."""

    model_config = ConfigDict(extra="ignore")
    sample_rate: int = 44100

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, value: int) -> int:
        if value not in SUPPORTED_RATES:
            raise ValueError(f"must be one of {list(SUPPORTED_RATES)}")
        return value


class OutputFormat(Rate):
    container: Literal["raw"] = "raw"
    encoding: Literal["pcm_s16le", "pcm_f32le", "pcm_mulaw"] = "pcm_f32le"  # the official SDK's default

    @property
    def audio_format(self) -> str:
        """Ours: pcm_mulaw is our mulaw (8 kHz); both PCM encodings are made from our s16le (f32 by the wire format)."""
        return "mulaw" if self.encoding == "pcm_mulaw" else "pcm"

    @property
    def rate(self) -> int:
        return 8000 if self.encoding == "pcm_mulaw" else self.sample_rate


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    speed: Speed | None = None  # the others (volume, emotion) are accepted and ignored


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    context_id: str | None = Field(None, max_length=128)
    cancel: bool = False
    transcript: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    model_id: str | None = None  # accepted; there is one model
    voice: Voice | None = None
    output_format: OutputFormat | None = None
    language: str | None = None  # accepted; the normaliser detects the script
    add_timestamps: bool = False
    use_normalized_timestamps: bool = False
    max_buffer_delay_ms: int | None = Field(None, ge=0, le=5000)
    generation_config: GenerationConfig | None = None
    speed: Speed | None = None
    flush: bool = False
    continue_: bool = Field(False, alias="continue")

    @field_validator("transcript")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else reject_control_characters(value)

    def wanted_speed(self) -> float | None:
        return (self.generation_config.speed if self.generation_config else None) or self.speed


def parse_client_message(raw: str) -> ClientMessage:
    return parse_message(raw, ClientMessage, text_field="transcript", closes=ends_context)


def ends_context(data: dict[str, Any]) -> bool:
    """A message ends its context unless it says `continue: true` (Cartesia's default is false), or cancels it."""
    return data.get("continue") is not True or data.get("cancel") is True
