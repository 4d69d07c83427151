"""The voice store the settings ask for (`TTS_VOICE_STORE`, resolved by `Settings.resolved_voice_store`)."""

from __future__ import annotations

from services.database import DatabaseClients
from services.voice_library.file_store import FileVoiceStore
from services.voice_library.postgres_store import PostgresVoiceStore
from services.voice_library.store import NoVoiceStore, VoiceStore
from services.voice_library.supabase_store import SupabaseVoiceStore
from shared.settings import Settings


def build_voice_store(settings: Settings, databases: DatabaseClients | None = None) -> VoiceStore:
    """The configured store, on the process's shared database clients when given (services/database.py)."""
    kind = settings.resolved_voice_store
    if kind == "postgres":
        if not settings.databases.database_url:
            raise ValueError("TTS_VOICE_STORE=postgres needs TTS_DATABASE_URL")
        pool = databases.postgres if databases is not None else None
        return PostgresVoiceStore(settings.databases.database_url, pool=pool)
    if kind == "supabase":
        client = databases.supabase if databases is not None else None
        return SupabaseVoiceStore(
            settings.databases.supabase_url, settings.databases.supabase_key, client=client
        )
    if kind == "none":
        return NoVoiceStore()
    return FileVoiceStore(settings.voices.voice_dir)
