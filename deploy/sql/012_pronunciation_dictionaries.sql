-- Pronunciation dictionaries (services/pronunciation): alias rules an API key stores and names in its requests
-- (ElevenLabs' pronunciation_dictionary_locators). A dictionary belongs to the key that made it (owner_key_id; no
-- foreign key, because static keys from settings have no api_keys row; '' on a server without keys). rules is a
-- JSON array of {text, alias, case_sensitive, word_boundaries}. A dictionary is never edited: version_id names
-- its one version.
-- Idempotent: every statement can run again on an already migrated database.

CREATE TABLE IF NOT EXISTS tts_pronunciation_dictionaries (
    dictionary_id  TEXT PRIMARY KEY,
    version_id     TEXT NOT NULL,
    owner_key_id   TEXT NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT,
    rules          JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT tts_pronunciation_dictionaries_id_shape CHECK (dictionary_id ~ '^[0-9A-Za-z]{20}$'),
    CONSTRAINT tts_pronunciation_dictionaries_name_length CHECK (char_length(name) BETWEEN 1 AND 128),
    CONSTRAINT tts_pronunciation_dictionaries_rules_array CHECK (jsonb_typeof(rules) = 'array')
);

CREATE INDEX IF NOT EXISTS tts_pronunciation_dictionaries_owner_created_idx
    ON tts_pronunciation_dictionaries (owner_key_id, created_at);

-- Row-level security on with no policies, like the other tables: only the table owner and the service role can
-- read or write; the anon key sees nothing.
ALTER TABLE tts_pronunciation_dictionaries ENABLE ROW LEVEL SECURITY;
