"""The WebSocket protocol's client messages (`start`, `text`, `flush`, `end`, `cancel`, `ping`) and their parser."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api.errors import ApiError
from api.http.fields import (
    LATENCY_DESCRIPTION,
    MAX_TEXT_CHARS,
    SUPPORTED_RATES,
    Latency,
    SamplingFields,
    check_rate_for_format,
    output_rate_for,
    reject_control_characters,
)
from api.pronunciation_schemas import LexiconField
from api.voice_attributes import VoiceAttributeFields
from audio.encoders import AudioFormat
from services.pipeline.speech import SpeechRequest
from shared.settings import Settings

MESSAGE_TYPES = ("start", "text", "flush", "end", "cancel", "ping")
# Fields of the HTTP request that mean nothing here; a one-shot message copied from an HTTP body may carry them.
_HTTP_ONLY_FIELDS = ("stream", "chunking")


class StartMessage(SamplingFields, LexiconField, VoiceAttributeFields):
    """`start`: opens an utterance. Sampling fields as in POST /v1/tts/generate."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start"] = "start"
    speaker: str | None = Field(None, min_length=1, max_length=128, description="Voice name or alias.")
    voice: str | None = Field(None, min_length=1, max_length=128, description="Same as speaker.")
    format: AudioFormat = Field(
        "pcm", description="pcm (s16le, default) | wav | mp3 | opus | flac | aac | mulaw | alaw."
    )
    sample_rate: int | None = Field(
        None, description=f"One of {SUPPORTED_RATES}; default 16000 (mulaw, alaw: 8000)."
    )
    output: Literal["16khz", "48khz"] | None = Field(
        None, description="Shorthand for sample_rate 16000 / 48000."
    )
    normalize: bool = Field(True, description="Expand numbers, currency, dates, abbreviations to words.")
    speed: float | None = Field(
        None,
        ge=0.25,
        le=4.0,
        description="Speaking speed as in /v1/audio/speech "
        "(maps to the model's speed label for style voices).",
    )
    latency: Latency | None = Field(None, description=LATENCY_DESCRIPTION)
    normalize_verbose: bool = Field(
        False,
        description="Add `normalized_text` (what the model is asked to speak) to "
        "the `started` and `done` events.",
    )
    timestamps: Literal["word", "character"] | None = Field(
        None,
        description="Send a `timestamps` event (words, or words and characters) before the audio of each "
        "aligned piece.",
    )
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="First text of the utterance.")
    ssml: bool = Field(False, description="Read the utterance's text as SSML (docs/api/ssml.md).")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else reject_control_characters(value)

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, value: int | None, info: ValidationInfo) -> int | None:
        return check_rate_for_format(value, info.data.get("format"))

    @model_validator(mode="after")
    def _consistent(self) -> StartMessage:
        if self.speaker and self.voice and self.speaker != self.voice:
            raise PydanticCustomError(
                "conflict", "'speaker' and 'voice' name different voices; send one of them"
            )
        return self

    def output_rate(self) -> int:
        return output_rate_for(self.format, self.sample_rate, self.output)

    def to_speech_request(self, settings: Settings) -> SpeechRequest:
        """The utterance's settings; its text arrives later, piece by piece."""
        return SpeechRequest(
            text="",
            voice=self.speaker or self.voice,
            voice_attributes=self.voice_attributes(),
            audio_format=self.format,
            sample_rate=self.output_rate(),
            sampling=self.to_sampling(settings),
            stream=True,
            normalize=self.normalize,
            chunking=True,
            speed=None if self.speed in (None, 1.0) else self.speed,
            latency=self.latency,
            normalize_verbose=self.normalize_verbose,
            timestamps=self.timestamps,
            ssml=self.ssml,
            lexicon=self.to_lexicon(),
        )


class TextMessage(BaseModel):
    """`text`: a piece of the utterance's text, appended verbatim (include the spaces between words)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str = Field(..., max_length=MAX_TEXT_CHARS)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return reject_control_characters(value)


class ControlMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["flush", "end", "cancel"]


class PingMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ping"]
    id: str | int | None = Field(None, description="Echoed in the pong.")


_MODELS: dict[str, type[BaseModel]] = {
    "start": StartMessage,
    "text": TextMessage,
    "flush": ControlMessage,
    "end": ControlMessage,
    "cancel": ControlMessage,
    "ping": PingMessage,
}


def _validation_error(exc: ValidationError, kind: str) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    detail = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        accepted = ", ".join(f for f in _MODELS[kind].model_fields if f != "type") or "none besides 'type'"
        return ApiError(
            "VALIDATION_ERROR",
            f"Unknown field '{field}' in a '{kind}' message; accepted: {accepted}.",
            param=field,
        )
    if first.get("type") == "missing":
        return ApiError(
            "VALIDATION_ERROR", f"Field '{field}' is required in a '{kind}' message.", param=field
        )
    code = (
        "TEXT_TOO_LONG" if field == "text" and first.get("type") == "string_too_long" else "VALIDATION_ERROR"
    )
    return ApiError(
        code, f"Invalid '{field}': {detail}" if field else f"Invalid '{kind}' message: {detail}", param=field
    )


def parse_message(raw: str) -> tuple[str, BaseModel]:
    """(kind, validated message). A message without `type` but with `text` is a one-shot request ("oneshot")."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(
            "INVALID_JSON", f"The message is not valid JSON ({exc.msg}); send one JSON object per text frame."
        ) from None
    except RecursionError:  # hostile nesting ([[[[...]]]]): a client error, not a server fault
        raise ApiError("INVALID_JSON", "The message nests too deeply; send a flat JSON object.") from None
    except ValueError as exc:  # an integer over Python's digit limit (sys.get_int_max_str_digits)
        raise ApiError("INVALID_JSON", f"The message holds a number too long to read ({exc}).") from None
    if not isinstance(data, dict):
        raise ApiError(
            "VALIDATION_ERROR", "A message must be a JSON object with a 'type' field.", param="type"
        )
    kind = data.get("type")
    if kind is None and "text" in data:  # the one-shot form: {"text": ..., "speaker": ...}
        for name in _HTTP_ONLY_FIELDS:
            data.pop(name, None)
        try:
            return "oneshot", StartMessage.model_validate(data)
        except ValidationError as exc:
            raise _validation_error(exc, "start") from None
    if not isinstance(kind, str) or kind not in _MODELS:  # a list or object is no name either (unhashable)
        shown = "missing" if kind is None else repr(kind)[:40]
        raise ApiError(
            "VALIDATION_ERROR",
            f"Unknown message type ({shown}); accepted: {', '.join(MESSAGE_TYPES)}.",
            param="type",
        )
    try:
        return kind, _MODELS[kind].model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, kind) from None
