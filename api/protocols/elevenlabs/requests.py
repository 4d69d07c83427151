"""ElevenLabs' wire vocabulary: the query parameters of a connection and the client messages (output formats:
`formats.py`; refusals: `errors.py`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.http.fields import MAX_TEXT_CHARS, Speed, reject_control_characters
from api.pronunciation_schemas import LocatorsField
from api.protocols.common import parse_message
from api.protocols.elevenlabs.formats import SOCKET_CODECS, OutputFormat, parse_output_format
from api.voice_attributes import Level
from processing.voice_description import VoiceAttributes, attributes_or_none

MAX_CONTEXTS = 5  # per socket, as ElevenLabs documents


class ConnectionParams(BaseModel):
    """The query string of `.../multi-stream-input` and `.../stream-input` (unknown parameters are ignored, as
    ElevenLabs does)."""

    model_config = ConfigDict(extra="ignore")

    output_format: str = "mp3_44100_128"
    model_id: str | None = None  # accepted; there is one model
    language_code: str | None = None  # accepted; the normaliser detects the script
    enable_logging: bool = True  # accepted; the request log is the deployment's choice
    enable_ssml_parsing: bool = False  # True: the SSML subset of processing/ssml.py (breaks are silence)
    apply_text_normalization: Literal["auto", "on", "off"] = "auto"
    auto_mode: bool = False  # True: each message is a complete sentence, spoken at once (as if flushed)
    sync_alignment: bool = False  # True: alignment times from the start of the context (see the README)
    inactivity_timeout: int = Field(20, ge=1, le=180)
    xi_api_key: str | None = None  # older clients send the key here
    authorization: str | None = None

    @property
    def normalize(self) -> bool:
        return self.apply_text_normalization != "off"

    def output(self) -> OutputFormat:
        return parse_output_format(self.output_format, SOCKET_CODECS)


class VoiceSettings(BaseModel):
    """`speed` (our speed) and the voice attributes `gender`, `pitch`, `speed_level` (an extension: a voice created
    from Spark-TTS's labels) change the speech; the others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    speed: Speed | None = None
    gender: Literal["female", "male"] | None = None
    pitch: Level | None = None
    speed_level: Level | None = None
    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None

    def voice_attributes(self) -> VoiceAttributes | None:
        return attributes_or_none(self.gender, self.pitch, self.speed_level)


class ClientMessage(LocatorsField):
    """Every client message is one shape: text to append (" " opens a context, "" is a keep-alive), and flags.
    `pronunciation_dictionary_locators` on the message that opens a context (or an earlier one) apply to it."""

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
    return parse_message(raw, ClientMessage, text_field="text", closes=ends_context)


def ends_context(data: dict[str, Any]) -> bool:
    """`close_context` (or `close_socket`, every context) ends the message's context."""
    return data.get("close_context") is True or data.get("close_socket") is True
