"""Where custom voices live: PostgreSQL or Supabase (table `tts_voices`), or one JSON file per voice on local disk.

`TTS_VOICE_STORE` picks one (services/voice_library/backends.py); `auto` takes PostgreSQL when `TTS_DATABASE_URL` is
set, else Supabase when its URL and key are set, else the file store (`TTS_VOICE_DIR`). Every store reads through to its backend on every call:
what another container created or deleted is seen at once (the only cache is VoiceLibrary's short TTL).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from services.errors import ServiceError
from services.voice_library.records import VoiceRecord


class VoiceStoreUnavailable(ServiceError):
    """The backend did not answer (503 with Retry-After); nothing was written."""

    def __init__(self, store: str, detail: str) -> None:
        super().__init__(
            "SERVICE_UNAVAILABLE",
            f"The voice library ({store}) is unreachable ({detail}); retry shortly.",
            retry_after=5,
        )


class VoiceStore(ABC):
    """Custom voice records. `owner` None means any owner (the admin); otherwise only that key's voices."""

    name: str = "base"

    @abstractmethod
    async def insert(self, record: VoiceRecord) -> None:
        """Store a new record (its id is new); all or nothing."""

    @abstractmethod
    async def get(self, voice_id: str) -> VoiceRecord | None: ...

    @abstractmethod
    async def list(self, owner: str | None) -> list[VoiceRecord]:
        """Oldest first."""

    @abstractmethod
    async def delete(self, voice_id: str, owner: str | None) -> bool:
        """True when a record was deleted (it existed and, with `owner`, belonged to it)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class NoVoiceStore(VoiceStore):
    """TTS_VOICE_STORE=none (and Modal without a database): nothing is saved, so nothing can be lost with a container.
    Creating a voice answers 501 before any encode; reads find nothing; per-request cloning needs no store."""

    name = "none"
    REASON = (
        "this deployment stores no voices (TTS_VOICE_STORE=none; on Modal, set TTS_DATABASE_URL or "
        "TTS_SUPABASE_URL/KEY to keep voices). Per-request cloning (reference_audio) still works."
    )

    def refuse(self) -> ServiceError:
        return ServiceError("VOICE_LIBRARY_UNAVAILABLE", f"Voices cannot be saved here: {self.REASON}")

    async def insert(self, record: VoiceRecord) -> None:
        raise self.refuse()

    async def get(self, voice_id: str) -> VoiceRecord | None:
        return None

    async def list(self, owner: str | None) -> list[VoiceRecord]:
        return []

    async def delete(self, voice_id: str, owner: str | None) -> bool:
        return False
