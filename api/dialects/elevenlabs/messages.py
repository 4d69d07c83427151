"""ElevenLabs' wire vocabulary: the query parameters of a connection, the client messages, output formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.dialects.common import parse_message
from api.errors import ApiError
from api.schemas import MAX_TEXT_CHARS, SUPPORTED_RATES, reject_control_characters
from audio.encoders import supported_rates

MAX_CONTEXTS = 5  # per socket, as ElevenLabs documents


@dataclass(frozen=True)
class OutputFormat:
    name: str  # as the client wrote it: pcm_24000, ulaw_8000, mp3_22050_32
    audio_format: str  # ours: pcm | mulaw | mp3
    sample_rate: int

    @property
    def bytes_per_second(self) -> int | None:
        """Raw formats: bytes per second of audio (alignment offsets from byte counts); None for mp3."""
        return {"pcm": 2, "mulaw": 1}.get(self.audio_format, 0) * self.sample_rate or None


def parse_output_format(value: str) -> OutputFormat:
    """`pcm_<rate>`, `ulaw_8000`, `mp3_<rate>_<kbps>` (the bitrate is accepted; our encoder picks its own)."""
    parts = value.split("_")
    kind = {"pcm": "pcm", "ulaw": "mulaw", "mp3": "mp3"}.get(parts[0])
    ok = kind is not None and len(parts) == (3 if kind == "mp3" else 2) and all(p.isdigit() for p in parts[1:])
    if ok:
        assert kind is not None
        rate = int(parts[1])
        if rate in SUPPORTED_RATES and rate in supported_rates(kind):
            return OutputFormat(value, kind, rate)
    accepted = [f"pcm_{r}" for r in SUPPORTED_RATES] + ["ulaw_8000"] + [
        f"mp3_{r}_<kbps>" for r in SUPPORTED_RATES if r in supported_rates("mp3")]
    raise ApiError("VALIDATION_ERROR", f"Invalid 'output_format' {value!r}; accepted: {', '.join(accepted)}.",
                   param="output_format")


class ConnectionParams(BaseModel):
    """The query string of `.../multi-stream-input` and `.../stream-input` (unknown parameters are ignored, as
    ElevenLabs does)."""

    model_config = ConfigDict(extra="ignore")

    output_format: str = "mp3_44100_128"
    model_id: str | None = None  # accepted; there is one model
    language_code: str | None = None  # accepted; the normaliser detects the script
    enable_logging: bool = True  # accepted; the request log is the deployment's choice
    enable_ssml_parsing: bool = False  # accepted; SSML tags are not parsed
    apply_text_normalization: Literal["auto", "on", "off"] = "auto"
    auto_mode: bool = False  # accepted: text is always cut at sentence ends (and on flush)
    sync_alignment: bool = False  # True: alignment times from the start of the context (see the README)
    inactivity_timeout: int = Field(20, ge=1, le=180)
    xi_api_key: str | None = None  # older clients send the key here
    authorization: str | None = None

    @property
    def normalize(self) -> bool:
        return self.apply_text_normalization != "off"

    def output(self) -> OutputFormat:
        return parse_output_format(self.output_format)


class VoiceSettings(BaseModel):
    """Only `speed` changes the speech (our speed); the others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    speed: float | None = Field(None, ge=0.25, le=4.0)
    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None


class ClientMessage(BaseModel):
    """Every client message is one shape: text to append (" " opens a context, "" is a keep-alive), and flags."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    context_id: str | None = Field(None, max_length=128)
    voice_settings: VoiceSettings | None = None
    generation_config: dict[str, Any] | None = None  # chunk_length_schedule: accepted, ignored
    flush: bool = False
    try_trigger_generation: bool = False  # older clients: same as flush
    close_context: bool = False
    immediate: bool = False  # with close_context: cancel instead of finishing (a vendor extension)
    close_socket: bool = False
    xi_api_key: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else reject_control_characters(value)


def parse_client_message(raw: str) -> ClientMessage:
    return parse_message(raw, ClientMessage, text_field="text")
