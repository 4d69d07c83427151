-- tts_store_requests: the Supabase request-log sink's write. PostgREST cannot insert rows and
-- update another table in one request, so the sink calls this function over RPC (POST /rest/v1/rpc/tts_store_requests
-- {"p_rows": [...]}) and it does what the PostgreSQL sink's single statement does: store the rows not stored before
-- (request_id is the idempotency key) and add the refunds those new rows carry (`refund_credits`, 008) to their
-- keys' balances, in one transaction. A replayed row conflicts, is not returned by the INSERT and refunds nothing,
-- so each owed refund is applied exactly once. Returns how many rows were new. Idempotent to re-run.

CREATE OR REPLACE FUNCTION tts_store_requests(p_rows JSONB)
RETURNS INTEGER
LANGUAGE sql
AS $$
    WITH incoming AS (
        SELECT * FROM jsonb_populate_recordset(NULL::tts_requests, p_rows)
    ), inserted AS (
        INSERT INTO tts_requests (
            request_id, key_id, speaker, stream, format, sample_rate, temperature, top_k, top_p, max_tokens,
            repetition_penalty, seed, text_length, text, text_chunked, status, error_code, ttfb_ms, rtf,
            audio_duration_seconds, credits_charged, created_at, completed_at, client_request_id,
            chunks_retried, chunks_cut, guard_trips, refund_credits)
        SELECT request_id, key_id, speaker, coalesce(stream, FALSE), coalesce(format, 'wav'), sample_rate,
               temperature, top_k, top_p, max_tokens, repetition_penalty, seed, text_length, text,
               coalesce(text_chunked, FALSE), status, error_code, ttfb_ms, rtf, audio_duration_seconds,
               coalesce(credits_charged, 0), coalesce(created_at, now()), completed_at, client_request_id,
               coalesce(chunks_retried, 0), coalesce(chunks_cut, 0), guard_trips, coalesce(refund_credits, 0)
          FROM incoming
        ON CONFLICT (request_id) DO NOTHING
        RETURNING key_id, refund_credits
    ), owed AS (
        SELECT key_id, sum(refund_credits) AS credits FROM inserted
         WHERE refund_credits > 0 AND key_id IS NOT NULL GROUP BY key_id
    ), refunded AS (
        UPDATE api_keys SET credit_balance = api_keys.credit_balance + owed.credits, updated_at = now()
          FROM owed WHERE api_keys.key_id = owed.key_id AND api_keys.credit_balance IS NOT NULL
        RETURNING api_keys.key_id
    )
    SELECT count(*)::INTEGER FROM inserted;
$$;

-- Only the service role writes the request log and moves credits (as in 003).
REVOKE ALL ON FUNCTION tts_store_requests(JSONB) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        EXECUTE 'REVOKE ALL ON FUNCTION tts_store_requests(JSONB) FROM anon, authenticated';
    END IF;
END
$$;
