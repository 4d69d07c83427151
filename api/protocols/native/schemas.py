"""`POST /v1/tts/generate`'s body (JSON, or the same fields as multipart/form-data with a reference recording)."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from api.http.fields import (
    LATENCY_DESCRIPTION,
    MAX_TEXT_CHARS,
    SPEED_DESCRIPTION,
    SUPPORTED_RATES,
    IgnoredFields,
    LanguageField,
    Latency,
    SamplingFields,
    Speed,
    check_rate_for_format,
    check_text,
    output_rate_for,
    reject_control_characters,
)
from api.pronunciation_schemas import LexiconField
from api.stitching import StitchingFields
from api.voice_attributes import VoiceAttributeFields
from audio.encoders import AudioFormat
from services.pipeline.speech import SpeechRequest
from services.voice_library import MAX_TRANSCRIPT_CHARS
from shared.settings import Settings


class TTSGenerateRequest(
    SamplingFields, StitchingFields, LanguageField, LexiconField, VoiceAttributeFields, IgnoredFields
):
    """`POST /v1/tts/generate`; unknown fields are ignored and named in X-Ignored-Fields (IgnoredFields)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "text": "Hello there! [excited] This is Spark-TTS.",
                "speaker": "default",
                "stream": True,
            }
        },
    )

    text: str = Field(
        ..., min_length=1, max_length=MAX_TEXT_CHARS, description="Text to speak (<= 50,000 characters)."
    )
    speaker: str | None = Field(
        None, min_length=1, max_length=128, description="Voice name or alias; default voice if omitted."
    )
    voice: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The same as `speaker` (OpenAI's name for it); send one of the two.",
    )
    speed: Speed | None = Field(None, description=SPEED_DESCRIPTION)
    stream: bool = Field(False, description="Chunked streaming response when true.")
    format: AudioFormat = Field(
        "wav", description="wav | pcm (s16le) | mp3 | opus (Ogg) | flac | aac (ADTS) | mulaw / alaw (8 kHz)."
    )
    output: Literal["16khz", "48khz"] = Field(
        "16khz", description="16khz native, or 48khz via AP-BWE super-resolution."
    )
    sample_rate: int | None = Field(
        None, description=f"Output rate, one of {SUPPORTED_RATES}; overrides `output`."
    )
    normalize: bool = Field(True, description="Expand numbers, currency, dates, abbreviations to words.")
    normalize_verbose: bool = Field(
        False,
        description="Return the normalised text in X-Normalized-Text (percent-encoded, first 2,000 characters) "
        "and log it at DEBUG level.",
    )
    chunking: bool = Field(True, description="Split long text at sentence boundaries (> 220 characters).")
    latency: Latency | None = Field(None, description=LATENCY_DESCRIPTION)
    timestamps: Literal["word", "character"] | None = Field(
        None,
        description="When each word (or character) is heard: a JSON answer (audio base64 + spans), or with "
        "stream=true JSON lines interleaving timestamps and audio. See README, Timestamps.",
    )
    captions: Literal["srt", "vtt"] | None = Field(
        None, description="With timestamps and stream=false: the words as SubRip or WebVTT in `captions`."
    )

    @field_validator("captions")
    @classmethod
    def _captions(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("stream"):
            raise PydanticCustomError(
                "conflict",
                "captions come with the complete answer; send stream=false (a "
                "stream with timestamps carries the words themselves)",
            )
        return value

    reference_audio: str | None = Field(
        None,
        description="Clone a voice for this request only (not saved): a 1-30 s recording, base64 (a data: URL "
        "prefix is accepted), or the file `reference_audio` of a multipart/form-data body. Not with `speaker`.",
    )
    reference_text: str | None = Field(
        None,
        max_length=MAX_TRANSCRIPT_CHARS,
        description="What `reference_audio` says: every prompt then continues "
        "the reference (closer imitation).",
    )

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return check_text(value)

    @field_validator("voice")
    @classmethod
    def _voice(cls, value: str | None, info: ValidationInfo) -> str | None:
        speaker = info.data.get("speaker")
        if value is not None and speaker is not None and speaker != value:
            raise PydanticCustomError("conflict", "is another name for 'speaker'; send one of the two")
        return value

    @field_validator("reference_audio")
    @classmethod
    def _reference(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("speaker") is not None or info.data.get("voice") is not None:
            raise PydanticCustomError(
                "conflict",
                "send either 'speaker' (a voice) or 'reference_audio' (a recording to clone), not both",
            )
        if any(info.data.get(name) is not None for name in ("gender", "pitch", "speed_level")):
            raise PydanticCustomError(
                "conflict",
                "send either voice attributes (gender, pitch, speed_level) or 'reference_audio', not both",
            )
        decode_reference(value)
        return value

    @field_validator("reference_text")
    @classmethod
    def _reference_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "reference_audio" in info.data and info.data["reference_audio"] is None:
            raise PydanticCustomError("orphan", "is the transcript of 'reference_audio'; send that too")
        return None if value is None else reject_control_characters(value, "reference_text")

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, value: int | None, info: ValidationInfo) -> int | None:
        # Checked here rather than in a model validator so the error names the field (`param`).
        return check_rate_for_format(value, info.data.get("format"))

    def output_rate(self) -> int:
        return output_rate_for(self.format, self.sample_rate, self.output)

    def to_speech_request(self, settings: Settings) -> SpeechRequest:
        return SpeechRequest(
            text=self.text,
            voice=self.speaker or self.voice,
            audio_format=self.format,
            sample_rate=self.output_rate(),
            sampling=self.to_sampling(settings),
            stream=self.stream,
            normalize=self.normalize,
            speed=self.speed,
            voice_field="speaker" if self.voice is None else "voice",
            chunking=self.chunking,
            normalize_verbose=self.normalize_verbose,
            latency=self.latency,
            reference_audio=None if self.reference_audio is None else decode_reference(self.reference_audio),
            reference_text=self.reference_text,
            voice_attributes=self.voice_attributes(),
            timestamps=self.timestamps or ("word" if self.captions else None),
            lexicon=self.to_lexicon(),
            **self.stitching(),
        )


def decode_reference(value: str) -> bytes:
    """The bytes of a base64 reference (standard or URL-safe alphabet; a `data:...;base64,` prefix is skipped)."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    text = "".join(value.split())
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError(
            "base64",
            "is not valid base64; send the recording's bytes base64-encoded, or the "
            "file as multipart/form-data",
        ) from None
    if not data:
        raise PydanticCustomError("empty", "is empty; send a 1-30 s recording")
    return data
