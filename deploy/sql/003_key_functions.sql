-- Functions the service calls through Supabase's RPC endpoint (POST /rest/v1/rpc/<name>); on plain
-- PostgreSQL the service runs the same statements directly.
--
-- tts_lookup_api_key: the key record for a SHA-256 hash. A POST body keeps the hash out of URLs (and so
-- out of proxy and access logs), which a GET ?key_hash=eq.<hash> filter would not.

CREATE OR REPLACE FUNCTION tts_lookup_api_key(p_key_hash TEXT)
RETURNS SETOF api_keys
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM api_keys WHERE key_hash = p_key_hash;
$$;

-- Atomic credit moves; PostgREST cannot express a conditional UPDATE itself.
--
-- tts_debit_credits: takes p_amount from the key only when the balance covers it (or is unlimited);
-- returns one row with the new balance (NULL = unlimited), or no row when the key is unknown or short.

CREATE OR REPLACE FUNCTION tts_debit_credits(p_key_id TEXT, p_amount BIGINT)
RETURNS TABLE (credit_balance BIGINT)
LANGUAGE sql
AS $$
    UPDATE api_keys AS k
       SET credit_balance = k.credit_balance - p_amount, updated_at = now()
     WHERE k.key_id = p_key_id
       AND (k.credit_balance IS NULL OR k.credit_balance >= p_amount)
    RETURNING k.credit_balance;
$$;

-- Gives back credits held for a request that failed before producing audio.
CREATE OR REPLACE FUNCTION tts_refund_credits(p_key_id TEXT, p_amount BIGINT)
RETURNS TABLE (credit_balance BIGINT)
LANGUAGE sql
AS $$
    UPDATE api_keys AS k
       SET credit_balance = k.credit_balance + p_amount, updated_at = now()
     WHERE k.key_id = p_key_id AND k.credit_balance IS NOT NULL
    RETURNING k.credit_balance;
$$;

-- Only the service role may look up keys or move credits. The functions run with the caller's rights,
-- so RLS already hides api_keys from Supabase's anon/authenticated roles; revoking EXECUTE says so too.
REVOKE ALL ON FUNCTION tts_lookup_api_key(TEXT) FROM PUBLIC;
REVOKE ALL ON FUNCTION tts_debit_credits(TEXT, BIGINT) FROM PUBLIC;
REVOKE ALL ON FUNCTION tts_refund_credits(TEXT, BIGINT) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        EXECUTE 'REVOKE ALL ON FUNCTION tts_lookup_api_key(TEXT) FROM anon, authenticated';
        EXECUTE 'REVOKE ALL ON FUNCTION tts_debit_credits(TEXT, BIGINT) FROM anon, authenticated';
        EXECUTE 'REVOKE ALL ON FUNCTION tts_refund_credits(TEXT, BIGINT) FROM anon, authenticated';
    END IF;
END
$$;
