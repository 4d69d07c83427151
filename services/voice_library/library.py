"""The voice library: create (from audio or imported tokens), read, list and delete custom voices, with ownership;
and the voices synthesis uses (a stored voice by id, or a per-request reference).

Ownership: a voice belongs to the API key that made it and is visible only to it; any other key gets 404
VOICE_NOT_FOUND, never 403, so ids do not leak. The admin sees and deletes every voice.

Freshness: management calls (get, list, delete) always read the store. Synthesis looks a voice up per request and
keeps a found voice for `TTS_VOICE_CACHE_TTL_S` seconds (5 by default; 0 turns it off); absences are never cached.
A delete on this container takes effect at once; on others within that TTL.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.clone import ReferenceTokens
from core.voices import Voice
from services.errors import ServiceError, voice_not_found
from services.pipeline.text_plan import check_voice_fits
from services.voice_library.backends import build_voice_store
from services.voice_library.records import (
    MAX_CONSENT_CHARS,
    MAX_NAME_CHARS,
    MAX_TRANSCRIPT_CHARS,
    VoiceRecord,
    VoiceRecordError,
    clean_text,
    is_custom_voice_id,
    new_voice_id,
)
from services.voice_library.references import EncodedReference, ReferenceEncoding, References
from services.voice_library.store import NoVoiceStore, VoiceStore
from shared.settings import Settings

if TYPE_CHECKING:
    from services.database import DatabaseClients
    from services.pipeline.resources import ModelSource

logger = logging.getLogger("services.voice_library")
_CACHE_MAX = 1024


@dataclass(frozen=True)
class Caller:
    """Who asks: one API key (its voices), or the admin (every voice; `key_id` None)."""

    key_id: str | None
    admin: bool = False
    # The key's credit check (AccessGrant.check_balance), run before an upload is decoded: a key without credits
    # does not get the encoder.
    check_balance: Callable[[], Awaitable[None]] | None = field(default=None, compare=False, repr=False)

    @property
    def owner_filter(self) -> str | None:
        return None if self.admin else self.key_id


@dataclass(frozen=True)
class NewVoice:
    """What a client gives besides the audio or tokens (checked by `VoiceLibrary`)."""

    name: str
    transcript: str | None = None
    consent: str | None = None


def _invalid(exc: VoiceRecordError) -> ServiceError:
    return ServiceError("VALIDATION_ERROR", f"Invalid '{exc.field}': {exc.message}", exc.field)


class VoiceLibrary:
    def __init__(
        self, settings: Settings, models: ModelSource, store: VoiceStore, references: References
    ) -> None:
        self.settings = settings
        self.models = models
        self.store = store
        self.references = references
        self.ttl_s = settings.voices.voice_cache_ttl_s
        self.max_per_key = settings.voices.voice_library_max_per_key
        # Count-then-insert is serialised in this process (inserts are rare and quick, encodes run outside it), so
        # concurrent creates of one key cannot all pass the cap; across containers the overshoot is at most one
        # voice per container.
        self._insert_lock = asyncio.Lock()
        self._held_rooms: dict[
            str, int
        ] = {}  # owner -> voices being made (hold_room), counted against the cap
        self._recent: dict[str, tuple[float, VoiceRecord, Voice]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        models: ModelSource,
        encoder: ReferenceEncoding,
        databases: DatabaseClients | None = None,
    ) -> VoiceLibrary:
        references = References(
            encoder,
            max_concurrent=settings.voices.clone_max_concurrent_encodes,
            cache_size=settings.voices.clone_reference_cache_size,
            max_per_key=settings.voices.clone_max_encodes_per_key,
            max_waiting=settings.voices.clone_max_waiting_encodes,
            wait_s=settings.voices.clone_encode_wait_s,
            deadline_s=settings.voices.clone_encode_deadline_s,
        )
        return cls(settings, models, build_voice_store(settings, databases), references)

    async def close(self) -> None:
        await self.store.close()

    # ------------------------------------------------------------------ create
    def _check_ready(self) -> None:
        if isinstance(self.store, NoVoiceStore):  # before any encode: the voice could not be kept
            raise self.store.refuse()
        if not self.models.ready:
            raise ServiceError(
                "MODEL_NOT_LOADED",
                f"The model is not ready yet (state: {self.models.state_name}); retry shortly.",
                retry_after=5,
            )

    @staticmethod
    def _fields(new: NewVoice) -> NewVoice:
        try:
            return NewVoice(
                name=clean_text(new.name, "name", MAX_NAME_CHARS, required=True) or "",
                transcript=clean_text(new.transcript, "transcript", MAX_TRANSCRIPT_CHARS),
                consent=clean_text(new.consent, "consent", MAX_CONSENT_CHARS),
            )
        except VoiceRecordError as exc:
            raise _invalid(exc) from None

    async def create(self, new: NewVoice, audio: bytes, owner: str) -> VoiceRecord:
        """Encode `audio` and store the voice; nothing is stored unless every step succeeded."""
        new = self._fields(new)
        self._check_ready()
        await self.check_room(owner)  # before any decode or encode
        self.references.check_available()
        encoded = await self.references.encode(
            audio, semantic=new.transcript is not None, param="audio_sample", key_id=owner
        )
        return await self._save(new, encoded.tokens, owner, encoded, param="audio_sample")

    async def import_voice(
        self,
        new: NewVoice,
        tokens: ReferenceTokens,
        owner: str,
        *,
        reference_seconds: float | None = None,
        audio_sha256: str | None = None,
        holding: bool = False,
    ) -> VoiceRecord:
        """Store a voice whose tokens were made elsewhere (an export from another deployment); no encoder needed.
        `holding`: the caller holds a room for it (hold_room)."""
        new = self._fields(new)
        self._check_ready()
        await self.check_room(owner, holding=holding)
        return await self._save(
            new,
            tokens,
            owner,
            None,
            param="global_tokens",
            seconds=reference_seconds,
            sha256=audio_sha256,
            holding=holding,
        )

    async def _save(
        self,
        new: NewVoice,
        tokens: ReferenceTokens,
        owner: str,
        encoded: EncodedReference | None,
        *,
        param: str,
        seconds: float | None = None,
        sha256: str | None = None,
        holding: bool = False,
    ) -> VoiceRecord:
        try:
            record = VoiceRecord(
                voice_id=new_voice_id(self.models.pipeline_resources().voices),
                name=new.name,
                owner_key_id=owner,
                global_tokens=tokens.global_tokens,
                created_at=datetime.now(UTC),
                semantic_tokens=tokens.semantic_tokens,
                transcript=new.transcript,
                consent=new.consent,
                reference_seconds=encoded.seconds if encoded is not None else seconds,
                audio_sha256=encoded.sha256 if encoded is not None else sha256,
            )
        except VoiceRecordError as exc:
            raise _invalid(exc) from None
        check_voice_fits(self.models.pipeline_resources(), record.to_voice(), param)
        async with self._insert_lock:
            await self.check_room(owner, holding=holding)
            await self.store.insert(record)
        logger.info(
            "voice created",
            extra={"voice_id": record.voice_id, "key_id": owner, "continuation": record.continuation},
        )
        return record

    async def check_room(self, owner: str, *, holding: bool = False) -> None:
        """VOICE_LIMIT_REACHED when `owner` keeps the most custom voices allowed, counting those being made (asked
        again as one is saved; `holding`: the caller holds one of the rooms being made)."""
        if not self.max_per_key:
            return
        held = self._held_rooms.get(owner, 0) - (1 if holding else 0)
        if len(await self.store.list(owner)) + held >= self.max_per_key:
            raise ServiceError(
                "VOICE_LIMIT_REACHED",
                f"This API key keeps {self.max_per_key} custom voices, the most "
                "allowed; delete one (DELETE /v1/audio/voices/{id}) before adding another.",
            )

    async def hold_room(self, owner: str) -> Callable[[], None]:
        """Room for one voice that costs work to make (a voice design's generation), held from before the work
        until the returned function is called: four designs at once with room for one generate (and charge) one,
        not four of which three are then refused."""
        async with self._insert_lock:
            await self.check_room(owner)
            self._held_rooms[owner] = self._held_rooms.get(owner, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                left = self._held_rooms.pop(owner, 1) - 1
                if left:
                    self._held_rooms[owner] = left

        return release

    # ------------------------------------------------------------------ read, list, delete
    async def get(self, voice_id: str, caller: Caller) -> VoiceRecord:
        # Every stored id is well formed (new_voice_id): anything else (a NUL byte, which PostgreSQL refuses as
        # text) is simply not found, without asking the store.
        if not is_custom_voice_id(voice_id):
            raise voice_not_found(voice_id)
        record = await self.store.get(voice_id)
        if record is None or not (caller.admin or record.owner_key_id == caller.key_id):
            raise voice_not_found(voice_id)
        return record

    async def list(self, caller: Caller) -> builtins.list[VoiceRecord]:
        if not caller.admin and caller.key_id is None:
            return []
        return await self.store.list(caller.owner_filter)

    async def page(
        self, caller: Caller, *, limit: int, after: str | None
    ) -> tuple[builtins.list[VoiceRecord], str | None]:
        """At most `limit` voices after the voice `after` (oldest first), and the id to continue after (None: the
        last page). An `after` this caller cannot see is VALIDATION_ERROR."""
        voices = await self.list(caller)
        start = 0
        if after is not None:
            ids = [r.voice_id for r in voices]
            if after not in ids:
                raise ServiceError(
                    "VALIDATION_ERROR",
                    "Invalid 'after': not one of this key's voices; pass the "
                    "'next_after' of the previous page.",
                    "after",
                )
            start = ids.index(after) + 1
        chunk = voices[start : start + limit]
        more = start + limit < len(voices)
        return chunk, (chunk[-1].voice_id if more and chunk else None)

    async def delete(self, voice_id: str, caller: Caller) -> None:
        self._recent.pop(voice_id, None)
        if not is_custom_voice_id(voice_id) or not await self.store.delete(voice_id, caller.owner_filter):
            raise voice_not_found(voice_id)
        logger.info(
            "voice deleted", extra={"voice_id": voice_id, "key_id": caller.key_id, "admin": caller.admin}
        )

    # ------------------------------------------------------------------ synthesis
    async def voice_for(self, voice_id: str, key_id: str | None, param: str = "speaker") -> Voice:
        """The stored voice `voice_id` if `key_id` owns it; VOICE_NOT_FOUND (404) otherwise."""
        if not is_custom_voice_id(voice_id):
            raise voice_not_found(voice_id, param)
        now = time.monotonic()
        recent = self._recent.get(voice_id)
        if recent is not None and recent[0] > now:
            record, voice = recent[1], recent[2]
        else:
            found = await self.store.get(voice_id)
            if found is None:
                self._recent.pop(voice_id, None)
                raise voice_not_found(voice_id, param)
            record, voice = found, found.to_voice()
            if self.ttl_s > 0:
                if len(self._recent) >= _CACHE_MAX:
                    self._recent.clear()
                self._recent[voice_id] = (now + self.ttl_s, record, voice)
        if record.owner_key_id != key_id:
            raise voice_not_found(voice_id, param)
        check_voice_fits(self.models.pipeline_resources(), voice, param)
        return voice

    async def reference_voice(
        self, audio: bytes, transcript: str | None, param: str = "reference_audio", key_id: str | None = None
    ) -> Voice:
        """A voice for one request from its own reference (not saved; encodings are cached per key, by content)."""
        try:
            transcript = clean_text(transcript, "reference_text", MAX_TRANSCRIPT_CHARS)
        except VoiceRecordError as exc:
            raise _invalid(exc) from None
        encoded = await self.references.encode(
            audio, semantic=transcript is not None, param=param, key_id=key_id
        )
        tokens = encoded.tokens
        continuation = transcript is not None and tokens.semantic_tokens is not None
        voice = Voice(
            id=f"ref_{encoded.sha256[:16]}",
            name="Per-request reference",
            kind="global_tokens",
            source="reference",
            global_tokens=tokens.global_tokens,
            reference_text=transcript if continuation else None,
            reference_semantic=tokens.semantic_tokens if continuation else None,
        )
        check_voice_fits(self.models.pipeline_resources(), voice, param)
        return voice
