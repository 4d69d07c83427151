-- API keys. Only the SHA-256 hex digest of a key is stored; the key itself is shown once at creation.
-- Credits: 1 credit = 1 character of request text. credit_balance NULL = unlimited (no credit checks).

CREATE TABLE IF NOT EXISTS api_keys (
    key_id                 TEXT PRIMARY KEY,
    key_hash               TEXT NOT NULL,
    owner                  TEXT NOT NULL DEFAULT '',
    status                 TEXT NOT NULL DEFAULT 'active',
    expires_at             TIMESTAMPTZ,
    -- NULL: the service defaults (TTS_RATE_LIMIT_PER_MINUTE, TTS_MAX_CONCURRENT_STREAMS).
    rate_limit_per_minute  INTEGER,
    max_concurrent         INTEGER,
    credit_balance         BIGINT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
    CONSTRAINT api_keys_key_hash_hex CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT api_keys_status_check CHECK (status IN ('active', 'suspended', 'revoked')),
    CONSTRAINT api_keys_rate_limit_positive CHECK (rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0),
    CONSTRAINT api_keys_max_concurrent_positive CHECK (max_concurrent IS NULL OR max_concurrent > 0)
);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
