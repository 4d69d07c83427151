"""Request and response models of the public API (protocol only; serving logic lives in routes/services)."""

from __future__ import annotations

import base64
import binascii
import math
import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from api.pronunciation_schemas import LexiconField
from api.protocols.openai.models import OpenAIModel
from api.stitching import StitchingFields
from api.voice_attributes import VoiceAttributeFields
from audio.encoders import FORMATS, AudioFormat, supported_rates
from core.streaming import LatencyPreference
from processing.voice_description import VoiceAttributes, VoiceDescription, describe_voice
from services.pipeline.speech import SpeechRequest
from services.pipeline.synthesis import SamplingOptions
from services.voice_library import MAX_TRANSCRIPT_CHARS
from shared.settings import Settings

# The output rates this service offers; a format accepts those of them its encoder can write.
SUPPORTED_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
# OpenAI's speech endpoint answers 24 kHz for every format; clients of `pcm` assume it.
OPENAI_SAMPLE_RATE = 24_000
MAX_TEXT_CHARS = 50_000
_ALLOWED_CONTROL = {"\n", "\r", "\t"}


def reject_control_characters(value: str, field: str = "text") -> str:
    """Control characters break the model and logs; newlines and tabs are fine."""
    for position, char in enumerate(value):
        if char not in _ALLOWED_CONTROL and unicodedata.category(char) == "Cc":
            raise PydanticCustomError(
                "control_character",
                f"'{field}' contains the control character U+{ord(char):04X} at position {position}; "
                "remove control characters (newlines and tabs are accepted)",
            )
    return value


def check_text(value: str, field: str = "text") -> str:
    """Reject blank text and control characters."""
    if not value.strip():
        raise PydanticCustomError(
            "blank_text", f"'{field}' must contain something to speak; it is empty or whitespace"
        )
    return reject_control_characters(value, field)


def check_rate_for_format(value: int | None, audio_format: str | None) -> int | None:
    """A supported output rate that the format can carry (mulaw is 8 kHz; Ogg Opus has no 22.05/44.1 kHz)."""
    if value is None:
        return value
    if value not in SUPPORTED_RATES:
        raise PydanticCustomError("bad_rate", f"must be one of {list(SUPPORTED_RATES)}, got {value}")
    if audio_format in FORMATS and value not in supported_rates(audio_format):
        offered = [rate for rate in SUPPORTED_RATES if rate in supported_rates(audio_format)]
        raise PydanticCustomError(
            "bad_rate",
            f"{value} is not valid with format {audio_format} (accepted: {', '.join(map(str, offered))})",
        )
    return value


MIN_SPEED, MAX_SPEED = 0.25, 4.0


def check_speed(value: object) -> object:
    """A speed is a finite number: JSON true/false is not 1.0/0.0, and NaN or infinity is named as such (pydantic's
    range check alone says NaN is "not less than or equal to 4")."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "speed_type", f"must be a number from {MIN_SPEED} to {MAX_SPEED}, not {str(value).lower()}"
        )
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value  # pydantic's own message for text that is not a number
    if isinstance(number, float) and not math.isfinite(number):
        raise PydanticCustomError(
            "speed_finite", f"must be a finite number from {MIN_SPEED} to {MAX_SPEED}, got {value}"
        )
    return value


# Every route's `speed` (the dialects' too): 0.25-4.0, a finite number, never a boolean.
Speed = Annotated[float, BeforeValidator(check_speed), Field(ge=MIN_SPEED, le=MAX_SPEED)]


def output_rate_for(audio_format: str, sample_rate: int | None, output: str | None) -> int:
    """The rate a request asked for: mulaw and alaw are always 8 kHz; `sample_rate` overrides the `output`
    shorthand."""
    if audio_format in ("mulaw", "alaw"):
        return 8000
    if sample_rate is not None:
        return sample_rate
    return 48000 if output == "48khz" else 16000


SPEED_DESCRIPTION = (
    "Speaking rate, 0.25-4.0 (1.0: the voice's own). Style voices use the trained speed labels and "
    "a time-stretch for the rest of the way; every other voice is time-stretched (see README, Speed)."
)
INSTRUCTIONS_DESCRIPTION = (
    "A voice description in English: words naming gender (male, woman, ...), pitch (low, deep, high-pitched, "
    "...) and speed (slow, fast, ...) create a voice from those labels, as `gender`, `pitch` and `speed_level` do "
    "(those fields win where both name one). X-Voice-Description says what was understood, "
    "X-Voice-Description-Ignored the words that were not (docs/api/voice-attributes.md)."
)
Latency = LatencyPreference  # the streaming decoder's own names (core/streaming.py)
LATENCY_DESCRIPTION = (
    "Streams only: how soon the first audio comes. lowest: after 8 engine steps (80 ms first chunk); "
    "balanced: after 16; exact: after 49, streamed audio within 1e-3 of the offline decode. "
    "Default: the deployment's TTS_DEFAULT_LATENCY (balanced)."
)


# The languages Spark-TTS-0.5B was trained to speak (docs/reference/spark-tts.md), and the names clients send for
# them: ISO 639-1/2/3 codes, a BCP 47 tag's first subtag (en-US, zh-Hans) or the English name.
SPOKEN_LANGUAGES = {"en": "English", "zh": "Chinese"}
_LANGUAGE_NAMES = {
    "en": "en",
    "eng": "en",
    "english": "en",
    "zh": "zh",
    "zho": "zh",
    "chi": "zh",
    "cmn": "zh",
    "chinese": "zh",
    "mandarin": "zh",
}
LANGUAGE_DESCRIPTION = (
    "The text's language: en or zh (also en-US, zh-CN, English, Chinese, ...), the two Spark-TTS "
    "speaks; any other is a 400. Optional: numbers and dates are read by the script around them."
)


def check_language(value: str | None) -> str | None:
    """`en` or `zh` for a name of English or Chinese; any other language is refused with what the model speaks."""
    if value is None:
        return None
    primary = value.strip().lower().replace("_", "-").split("-")[0]
    if primary in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[primary]
    spoken = " and ".join(f"{name} ({code})" for code, name in SPOKEN_LANGUAGES.items())
    hint = (
        " (Hindi text is normalised, but the model has no Hindi voice)"
        if primary in ("hi", "hin", "hindi")
        else ""
    )
    raise PydanticCustomError(
        "unsupported_language",
        f"the model speaks {spoken}, not {value!r}{hint}; send one of those, or leave 'language' out",
    )


class LanguageField(BaseModel):
    """`language`, on every HTTP synthesis body: checked, then the normaliser reads each span by its own script."""

    language: str | None = Field(None, max_length=64, description=LANGUAGE_DESCRIPTION)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return check_language(value)


class IgnoredFields(BaseModel):
    """Unknown fields on both HTTP synthesis bodies: accepted, left unused and named in X-Ignored-Fields, so a client
    built for another server (or a newer OpenAI API) keeps working; a near miss of a known field is refused as a
    misspelling (api/protocols/native/routes.py, unknown_fields)."""

    model_config = ConfigDict(extra="allow")

    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class SamplingFields(BaseModel):
    """Sampling fields every synthesis message shares; `to_sampling` merges the deployment's defaults (once)."""

    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="Sampling temperature (0 = greedy). Default 0.8."
    )
    top_k: int | None = Field(None, ge=1, le=1000, description="Top-k sampling. Default 50.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling. Default 1.0.")
    max_tokens: int | None = Field(
        None, ge=1, le=8192, description="Most semantic tokens per text chunk (50 = 1 s). Default 4096."
    )
    repetition_penalty: float | None = Field(
        None, ge=0.5, le=2.0, description="Repetition penalty. Default 1.05."
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Seed for reproducible output.")

    def to_sampling(self, settings: Settings) -> SamplingOptions:
        return SamplingOptions.with_defaults(
            settings,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
        )


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
