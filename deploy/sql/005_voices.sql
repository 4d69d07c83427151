-- Custom (cloned) voices: the voice library behind POST/GET/DELETE /v1/audio/voices (services/voice_library).
-- A voice belongs to the API key that made it (owner_key_id; no foreign key, because static keys from settings
-- have no api_keys row). global_tokens is the voice; semantic_tokens + transcript, when both are present, make
-- every prompt a continuation of the reference recording. The audio itself is never stored, only its SHA-256.
-- Idempotent: every statement can run again on an already migrated database.

CREATE TABLE IF NOT EXISTS tts_voices (
    voice_id           TEXT PRIMARY KEY,
    owner_key_id       TEXT NOT NULL,
    name               TEXT NOT NULL,
    global_tokens      INTEGER[] NOT NULL,
    semantic_tokens    INTEGER[],
    transcript         TEXT,
    -- What the client recorded about the speaker's consent (free text; the API asks for it, see README).
    consent            TEXT,
    reference_seconds  DOUBLE PRECISION,
    audio_sha256       TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT tts_voices_id_shape CHECK (voice_id ~ '^voice_[0-9a-f]{32}$'),
    CONSTRAINT tts_voices_name_length CHECK (char_length(name) BETWEEN 1 AND 64),
    CONSTRAINT tts_voices_global_count CHECK (cardinality(global_tokens) = 32),
    CONSTRAINT tts_voices_sha256_hex CHECK (audio_sha256 IS NULL OR audio_sha256 ~ '^[0-9a-f]{64}$')
);

CREATE INDEX IF NOT EXISTS tts_voices_owner_created_idx ON tts_voices (owner_key_id, created_at);

-- Row-level security on with no policies, like the other tables: only the table owner and the service role
-- (which the service uses on Supabase) can read or write; the anon key sees nothing.
ALTER TABLE tts_voices ENABLE ROW LEVEL SECURITY;
