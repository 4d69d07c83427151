-- Recent syntheses, remembered for continuity (services/continuity): a later request continues one
-- (previous_request_ids) or keeps its voice (POST /v1/audio/voices {"from_request_id"}). One row per finished
-- synthesis, keyed by the server request id (X-Server-Request-ID), owned by the API key that made it ('-' when
-- authentication is off). It holds the 32 global tokens, the last few seconds of semantic tokens and the words
-- they speak: no audio and no other text. Rows expire after TTS_CONTINUITY_RETENTION_S (2 hours by default); the
-- service deletes expired rows as it writes new ones.
-- Idempotent: every statement can run again on an already migrated database.

CREATE TABLE IF NOT EXISTS tts_recent_requests (
    request_id     TEXT PRIMARY KEY,
    owner_key_id   TEXT NOT NULL,
    voice_id       TEXT NOT NULL,
    global_tokens  INTEGER[] NOT NULL,
    tail_text      TEXT,
    tail_semantic  INTEGER[],
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT tts_recent_requests_global_count CHECK (cardinality(global_tokens) = 32),
    -- At most 6 s of speech (50 ids a second) and the words they speak.
    CONSTRAINT tts_recent_requests_tail_bounded CHECK (
        (tail_semantic IS NULL OR cardinality(tail_semantic) <= 300)
        AND (tail_text IS NULL OR char_length(tail_text) <= 1000))
);

CREATE INDEX IF NOT EXISTS tts_recent_requests_expires_idx ON tts_recent_requests (expires_at);

-- Row-level security on with no policies, like the other tables: only the table owner and the service role
-- (which the service uses on Supabase) can read or write; the anon key sees nothing.
ALTER TABLE tts_recent_requests ENABLE ROW LEVEL SECURITY;
