"""A custom (cloned) voice as stored, its id scheme, and its limits.

Ids are `voice_` + 32 random hex digits (128 bits): unguessable, so listing is the only way to learn one, and never
equal to a built-in voice id, alias or OpenAI voice name (checked against the registry when one is made).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.voices import (
    GLOBAL_CODEBOOK_SIZE,
    NUM_GLOBAL_TOKENS,
    SEMANTIC_CODEBOOK_SIZE,
    VOICE_ID_PREFIX,
    Voice,
    is_custom_voice_id,
)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_NAME_CHARS = 64
MAX_TRANSCRIPT_CHARS = 1000  # the transcript is repeated in every text chunk's prompt
MAX_CONSENT_CHARS = 1000
# 30 s of reference at 50 semantic tokens a second, with room for rounding in the encoder's framing.
MAX_SEMANTIC_TOKENS = 1600


class VoiceRecordError(ValueError):
    """A field of a voice record is invalid; `field` names it (the error envelope's `param`), `message` says what
    is wrong with it and reads after "Invalid 'field': "."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def new_voice_id(taken: Container[str] = ()) -> str:
    """A fresh id that no built-in voice name in `taken` (ids, aliases, OpenAI names) answers to."""
    while True:
        voice_id = VOICE_ID_PREFIX + secrets.token_hex(16)
        if voice_id not in taken:
            return voice_id


def clean_text(value: str | None, field: str, max_chars: int, *, required: bool = False) -> str | None:
    """Stripped text with no control characters (newline and tab allowed); blank optional text becomes None."""
    text = (value or "").strip()
    if not text:
        if required:
            raise VoiceRecordError(field, "must not be blank")
        return None
    if len(text) > max_chars:
        raise VoiceRecordError(field, f"{len(text)} characters long; at most {max_chars} are accepted")
    for char in text:
        if char not in "\n\t" and unicodedata.category(char) == "Cc":
            raise VoiceRecordError(
                field, f"contains the control character U+{ord(char):04X} (newline and tab are accepted)"
            )
    return text


def _ids(values: Sequence[Any], field: str, size: int) -> tuple[int, ...]:
    if isinstance(values, str | bytes) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise VoiceRecordError(field, "must be a list of integers")
    if not all(0 <= v < size for v in values):
        raise VoiceRecordError(field, f"values must be in 0..{size - 1}")
    return tuple(values)


@dataclass(frozen=True)
class VoiceRecord:
    """One custom voice. `global_tokens` is the voice; `semantic_tokens` + `transcript` (both or neither used) make
    every prompt a continuation of the reference recording (docs/reference/spark-tts.md#prompts)."""

    voice_id: str
    name: str
    owner_key_id: str
    global_tokens: tuple[int, ...]
    created_at: datetime
    semantic_tokens: tuple[int, ...] | None = None
    transcript: str | None = None
    consent: str | None = None
    reference_seconds: float | None = None
    audio_sha256: str | None = None

    def __post_init__(self) -> None:
        if not is_custom_voice_id(self.voice_id):
            raise VoiceRecordError("id", f"{self.voice_id!r} is not of the form voice_<32 hex digits>")
        clean_text(self.name, "name", MAX_NAME_CHARS, required=True)
        if not self.owner_key_id:
            raise VoiceRecordError("owner_key_id", "a voice needs an owner (the API key that made it)")
        if len(_ids(self.global_tokens, "global_tokens", GLOBAL_CODEBOOK_SIZE)) != NUM_GLOBAL_TOKENS:
            raise VoiceRecordError("global_tokens", f"must hold exactly {NUM_GLOBAL_TOKENS} integers")
        if self.semantic_tokens is not None:
            if (
                len(_ids(self.semantic_tokens, "semantic_tokens", SEMANTIC_CODEBOOK_SIZE))
                > MAX_SEMANTIC_TOKENS
            ):
                raise VoiceRecordError(
                    "semantic_tokens", f"at most {MAX_SEMANTIC_TOKENS} ids (30 s of reference) are accepted"
                )
        clean_text(self.transcript, "transcript", MAX_TRANSCRIPT_CHARS)
        clean_text(self.consent, "consent", MAX_CONSENT_CHARS)
        if self.reference_seconds is not None and not 0 <= self.reference_seconds <= 3600:
            raise VoiceRecordError("reference_seconds", "must be a duration in seconds (0-3600)")
        if self.audio_sha256 is not None and not _SHA256.match(self.audio_sha256):
            raise VoiceRecordError("audio_sha256", "must be 64 lowercase hex digits")
        if self.created_at.tzinfo is None:
            raise VoiceRecordError("created_at", "must carry a time zone")

    @property
    def continuation(self) -> bool:
        return self.transcript is not None and self.semantic_tokens is not None

    def to_voice(self) -> Voice:
        """The voice synthesis uses: a clone prompt with these globals, a continuation prompt with a transcript."""
        return Voice(
            id=self.voice_id,
            name=self.name,
            kind="global_tokens",
            source="custom",
            global_tokens=self.global_tokens,
            reference_text=self.transcript if self.continuation else None,
            reference_semantic=self.semantic_tokens if self.continuation else None,
        )

    def to_row(self) -> dict[str, Any]:
        """Column -> value, as the `tts_voices` table (deploy/sql/005_voices.sql) and the file store hold it."""
        return {
            "voice_id": self.voice_id,
            "owner_key_id": self.owner_key_id,
            "name": self.name,
            "global_tokens": list(self.global_tokens),
            "semantic_tokens": None if self.semantic_tokens is None else list(self.semantic_tokens),
            "transcript": self.transcript,
            "consent": self.consent,
            "reference_seconds": self.reference_seconds,
            "audio_sha256": self.audio_sha256,
            "created_at": self.created_at,
        }

    def to_json_row(self) -> dict[str, Any]:
        return {**self.to_row(), "created_at": self.created_at.isoformat()}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> VoiceRecord:
        created = row["created_at"]
        if not isinstance(created, datetime):
            created = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        semantic = row.get("semantic_tokens")
        seconds = row.get("reference_seconds")
        return cls(
            voice_id=row["voice_id"],
            name=row["name"],
            owner_key_id=row["owner_key_id"],
            global_tokens=tuple(row["global_tokens"]),
            created_at=created,
            semantic_tokens=None if semantic is None else tuple(semantic),
            transcript=row.get("transcript"),
            consent=row.get("consent"),
            reference_seconds=None if seconds is None else float(seconds),
            audio_sha256=row.get("audio_sha256"),
        )


COLUMNS: tuple[str, ...] = (
    "voice_id",
    "owner_key_id",
    "name",
    "global_tokens",
    "semantic_tokens",
    "transcript",
    "consent",
    "reference_seconds",
    "audio_sha256",
    "created_at",
)
