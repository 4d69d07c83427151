"""Protocol models of the voice library routes (`/v1/audio/voices`): the upload form, the JSON import, and the
voice as clients see it. Each converts itself; the rules on names and texts are the library's own (`clean_text`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile

from api.errors import ApiError, body_validation_error
from api.voice_attributes import Level
from core.clone import ReferenceTokens
from services.voice_library import (
    MAX_CONSENT_CHARS,
    MAX_NAME_CHARS,
    MAX_SEMANTIC_TOKENS,
    MAX_TRANSCRIPT_CHARS,
    NewVoice,
    VoiceRecord,
    VoiceRecordError,
    clean_text,
)

AUDIO_FIELD = "audio_sample"
_LIMITS = {"name": MAX_NAME_CHARS, "transcript": MAX_TRANSCRIPT_CHARS, "consent": MAX_CONSENT_CHARS}


def _checked(value: str | None, field: str) -> str | None:
    try:
        return clean_text(value, field, _LIMITS[field], required=field == "name")
    except VoiceRecordError as exc:
        raise PydanticCustomError("invalid_text", exc.message) from None


class VoiceFields(BaseModel):
    name: str = Field(..., description=f"Display name, 1-{MAX_NAME_CHARS} characters.")
    transcript: str | None = Field(
        None,
        description=f"What the reference says (at most {MAX_TRANSCRIPT_CHARS} characters). With it, every prompt "
        "continues the reference (closer imitation; the transcript and reference are repeated in every prompt).",
    )
    consent: str | None = Field(
        None, description="A note of the speaker's consent to being cloned (stored as given)."
    )

    @field_validator("name", "transcript", "consent")
    @classmethod
    def _texts(cls, value: str | None, info: Any) -> str | None:
        return _checked(value, info.field_name)

    def to_new_voice(self) -> NewVoice:
        return NewVoice(name=self.name, transcript=self.transcript, consent=self.consent)


class VoiceUpload(VoiceFields):
    """`POST /v1/audio/voices` as multipart/form-data: file `audio_sample` and the fields above."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    async def read(cls, request: Request) -> tuple[VoiceUpload, bytes]:
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get(AUDIO_FIELD)
            fields = {k: v for k, v in form.multi_items() if k != AUDIO_FIELD}
            if upload is None:
                raise ApiError(
                    "VALIDATION_ERROR",
                    f"Field '{AUDIO_FIELD}' is required: the reference recording as a "
                    "file (WAV, FLAC, MP3, Ogg/Opus, M4A or WebM; 1-30 s).",
                    param=AUDIO_FIELD,
                )
            if not isinstance(upload, UploadFile):
                raise ApiError(
                    "VALIDATION_ERROR",
                    f"Invalid '{AUDIO_FIELD}': send the recording as a file part "
                    "(filename set), not as a text field.",
                    param=AUDIO_FIELD,
                )
            if any(not isinstance(v, str) for v in fields.values()):
                raise ApiError("VALIDATION_ERROR", f"Only '{AUDIO_FIELD}' may be a file.")
            audio = await upload.read()
        try:
            return cls.model_validate(fields), audio
        except ValidationError as exc:
            raise body_validation_error(exc.errors()) from None


class VoiceImport(VoiceFields):
    """`POST /v1/audio/voices` as JSON: a voice exported from `GET /v1/audio/voices/{id}` (here or on another
    deployment), stored without encoding. Fields an export carries besides these (id, created_at, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    # StrictInt: a JSON `true` is no token id (lax validation would read it as 1).
    global_tokens: list[StrictInt] = Field(
        ..., min_length=32, max_length=32, description="The voice: 32 ids, 0..4095."
    )
    semantic_tokens: list[StrictInt] | None = Field(
        None,
        max_length=MAX_SEMANTIC_TOKENS,
        description="The reference's semantic ids (0..8191); used with a transcript.",
    )
    reference_seconds: float | None = Field(None, ge=0, le=3600)
    audio_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")

    @classmethod
    def parse(cls, body: bytes) -> VoiceImport:
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise body_validation_error(exc.errors()) from None

    def tokens(self) -> ReferenceTokens:
        semantic = None if self.semantic_tokens is None else tuple(self.semantic_tokens)
        return ReferenceTokens(global_tokens=tuple(self.global_tokens), semantic_tokens=semantic)


class VoiceFromRequest(BaseModel):
    """`POST /v1/audio/voices` as JSON `{"from_request_id", "name"}`: keep the voice a recent synthesis of this key
    spoke with (its 32 global tokens; services.continuity), with no reference audio and no encoder."""

    model_config = ConfigDict(extra="forbid")

    from_request_id: str = Field(
        ...,
        pattern=r"^[A-Za-z0-9._:-]{1,128}$",
        description="The X-Server-Request-ID of a synthesis this key finished recently.",
    )
    name: str = Field(..., description=f"Display name, 1-{MAX_NAME_CHARS} characters.")
    consent: str | None = Field(None, description="A note of consent (stored as given).")

    @field_validator("name", "consent")
    @classmethod
    def _texts(cls, value: str | None, info: Any) -> str | None:
        return _checked(value, info.field_name)

    @classmethod
    def parse(cls, body: bytes) -> VoiceFromRequest | None:
        """The body as this model when it names `from_request_id`; None for any other JSON body (an import)."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return None  # VoiceImport.parse reports it
        if not isinstance(data, dict) or "from_request_id" not in data:
            return None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise body_validation_error(exc.errors()) from None

    def to_new_voice(self) -> NewVoice:
        return NewVoice(name=self.name, consent=self.consent)


class VoiceView(BaseModel):
    """A custom voice as `GET /v1/audio/voices/{id}` (and the 201 of a create) shows it: everything needed to use,
    export and re-import it. `owner_key_id` only for the admin."""

    id: str
    name: str
    type: Literal["custom"] = "custom"
    created_at: datetime
    reference_seconds: float | None
    has_transcript: bool
    global_tokens: list[int]
    semantic_tokens: list[int] | None = None
    transcript: str | None = None
    consent: str | None = None
    audio_sha256: str | None = None
    owner_key_id: str | None = None

    @classmethod
    def of(cls, record: VoiceRecord, *, admin: bool = False) -> VoiceView:
        return cls(
            id=record.voice_id,
            name=record.name,
            created_at=record.created_at,
            reference_seconds=record.reference_seconds,
            has_transcript=record.transcript is not None,
            global_tokens=list(record.global_tokens),
            semantic_tokens=None if record.semantic_tokens is None else list(record.semantic_tokens),
            transcript=record.transcript,
            consent=record.consent,
            audio_sha256=record.audio_sha256,
            owner_key_id=record.owner_key_id if admin else None,
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def listed(self) -> dict[str, Any]:
        """The entry in `GET /v1/audio/voices`: the built-in entries' keys plus the facts that fit a list."""
        entry = {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "created_at": self.to_json()["created_at"],
            "reference_seconds": self.reference_seconds,
            "has_transcript": self.has_transcript,
        }
        if self.owner_key_id is not None:
            entry["owner_key_id"] = self.owner_key_id
        return entry


DESIGN_SAMPLE = "Hello! This is the voice I was created with."


class VoiceDesign(BaseModel):
    """`POST /v1/audio/voices/design`: create a voice from Spark-TTS's labels, speak `text` once in it, and keep its
    32 global tokens under `name` (a custom voice: the same voice every time it is used)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description=f"Display name, 1-{MAX_NAME_CHARS} characters.")
    gender: Literal["female", "male"] = Field(..., description="female or male.")
    pitch: Level = Field("moderate", description="very_low, low, moderate, high or very_high.")
    speed_level: Level = Field("moderate", description="very_low, low, moderate, high or very_high.")
    text: str = Field(
        DESIGN_SAMPLE, min_length=1, max_length=300, description="What the voice says while it is created."
    )
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1, description="Seed of that one generation (another seed, another voice)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str | None:
        return _checked(value, "name")

    def to_new_voice(self) -> NewVoice:
        return NewVoice(name=self.name)
