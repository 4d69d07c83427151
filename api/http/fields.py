"""The field checks and field groups every HTTP protocol's body shares (the native, OpenAI and vendor dialects'):
text, rate, speed and language checks, the sampling fields, and unknown fields named or refused as misspellings."""

from __future__ import annotations

import difflib
import math
import unicodedata
from typing import Annotated
from urllib.parse import quote

from fastapi import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from api.errors import ApiError
from audio.encoders import FORMATS, supported_rates
from core.streaming import LatencyPreference
from services.pipeline.synthesis import SamplingOptions
from shared.settings import Settings

# The output rates this service offers; a format accepts those of them its encoder can write.
SUPPORTED_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
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
    misspelling (`unknown_fields`)."""

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


def unknown_fields(body: IgnoredFields) -> list[str]:
    """The body's fields this route does not know: ignored and named in X-Ignored-Fields, except a near miss of a
    known field (`voices`, `sped`), which is a misspelling and refused with the name it was meant to be."""
    names = body.ignored_fields()
    for name in names:
        meant = difflib.get_close_matches(name, list(type(body).model_fields), n=1, cutoff=0.8)
        if meant:
            raise ApiError(
                "VALIDATION_ERROR",
                f"Field '{name}' is not permitted: no such field (did you mean '{meant[0]}'?)",
                param=name,
            )
    return names


def name_ignored_fields(response: Response, ignored: list[str]) -> Response:
    """X-Ignored-Fields: the fields accepted and left unused, comma-separated (percent-encoded, at most 1,000)."""
    if ignored:
        response.headers["X-Ignored-Fields"] = ",".join(quote(name, safe="") for name in ignored)[:1000]
    return response
