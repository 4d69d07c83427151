"""Voice cloning and the voice library: custom voices made from reference audio (or imported tokens), owned by the
API key that made them, stored in PostgreSQL, Supabase or local files; and per-request references.

- `records`: the stored record, ids, limits;
- `store` (+ `file_store`, `postgres_store`, `supabase_store`): where records live;
- `references`: reference audio -> tokens (worker threads, a per-process limit, an LRU by content hash);
- `library`: create / get / list / delete with ownership, and the voices synthesis uses.
"""

from services.voice_library.backends import build_voice_store
from services.voice_library.library import Caller, NewVoice, VoiceLibrary, voice_not_found
from services.voice_library.records import (
    MAX_CONSENT_CHARS,
    MAX_NAME_CHARS,
    MAX_SEMANTIC_TOKENS,
    MAX_TRANSCRIPT_CHARS,
    VoiceRecord,
    VoiceRecordError,
    clean_text,
    is_custom_voice_id,
    new_voice_id,
)
from services.voice_library.references import EncodedReference, ReferenceCache, References, audio_sha256
from services.voice_library.store import VoiceStore, VoiceStoreUnavailable

__all__ = [
    "MAX_CONSENT_CHARS",
    "MAX_NAME_CHARS",
    "MAX_SEMANTIC_TOKENS",
    "MAX_TRANSCRIPT_CHARS",
    "Caller",
    "EncodedReference",
    "NewVoice",
    "ReferenceCache",
    "References",
    "VoiceLibrary",
    "VoiceRecord",
    "VoiceRecordError",
    "VoiceStore",
    "VoiceStoreUnavailable",
    "audio_sha256",
    "build_voice_store",
    "clean_text",
    "is_custom_voice_id",
    "new_voice_id",
    "voice_not_found",
]
