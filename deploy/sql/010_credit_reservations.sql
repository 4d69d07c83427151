-- Credit reservations: one accounting model for reserving, debiting and recording credits.
--
--   reserve  tts_reserve_credits(reservation_id, request_id, key_id, amount): takes `amount` from the balance and
--            journals it in credit_reservations, in one transaction. Idempotent per reservation id: a retry after an
--            answer lost in flight (a dropped connection, a restart) finds the journal row and debits nothing more,
--            so "did it commit?" is always answered by the database, never assumed. Refused ('settled') once the
--            request's row is in tts_requests: a debit that arrives after settlement cannot be lost outside a row.
--   release  tts_release_credits(reservation_id): a reservation of a request that never started, given back;
--            idempotent (the journal row is deleted with the refund).
--   settle   tts_settle_credits(request_id, key_id, charged, outage): what the request's reservations took is
--            settled against what it is charged: the excess is refunded, credits spent on the outage allowance
--            (never debited live) are taken, down to zero, and the journal rows are deleted. Returns what was
--            actually charged. tts_store_requests (below) calls it for every row it stores, in the same
--            transaction as the row: so per key, at every moment, initial - balance == sum(credits_charged) over
--            its rows + the credits still journaled for requests whose row is not stored yet.
--
-- Every function locks the key's api_keys row first: reserve, release and settle of one key are serialised, so a
-- reserve racing its request's row either commits before the row's settlement (which then sees it) or sees the row.
-- The same functions serve plain PostgreSQL (called as SQL) and Supabase (called over RPC). Idempotent to re-run.

CREATE TABLE IF NOT EXISTS credit_reservations (
    reservation_id TEXT PRIMARY KEY,
    request_id     TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount >= 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS credit_reservations_request_id ON credit_reservations (request_id);
ALTER TABLE credit_reservations ENABLE ROW LEVEL SECURITY;

-- Credits a request spent on the outage allowance (the key store was down when it reserved them): taken from the
-- balance when its row is stored, at most what it is charged.
ALTER TABLE tts_requests ADD COLUMN IF NOT EXISTS outage_credits BIGINT NOT NULL DEFAULT 0;
-- What carried the request, `http` or `websocket` (a WebSocket utterance or dialect context is one row); NULL on rows
-- written before this column.
ALTER TABLE tts_requests ADD COLUMN IF NOT EXISTS transport TEXT;

CREATE OR REPLACE FUNCTION tts_reserve_credits(p_reservation_id TEXT, p_request_id TEXT, p_key_id TEXT,
                                               p_amount BIGINT)
RETURNS TABLE (o_status TEXT, o_balance BIGINT)  -- held | short | settled | unknown_key
LANGUAGE plpgsql
AS $$
DECLARE
    v_balance BIGINT;
BEGIN
    SELECT k.credit_balance INTO v_balance FROM api_keys k WHERE k.key_id = p_key_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_key'::TEXT, NULL::BIGINT;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM credit_reservations c WHERE c.reservation_id = p_reservation_id) THEN
        RETURN QUERY SELECT 'held'::TEXT, v_balance;  -- an earlier try committed it
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM tts_requests t WHERE t.request_id = p_request_id) THEN
        RETURN QUERY SELECT 'settled'::TEXT, v_balance;
        RETURN;
    END IF;
    IF v_balance IS NOT NULL AND v_balance < p_amount THEN
        RETURN QUERY SELECT 'short'::TEXT, v_balance;
        RETURN;
    END IF;
    UPDATE api_keys k SET credit_balance = k.credit_balance - p_amount, updated_at = now()
     WHERE k.key_id = p_key_id RETURNING k.credit_balance INTO v_balance;
    INSERT INTO credit_reservations (reservation_id, request_id, key_id, amount)
    VALUES (p_reservation_id, p_request_id, p_key_id, p_amount);
    RETURN QUERY SELECT 'held'::TEXT, v_balance;
END
$$;

CREATE OR REPLACE FUNCTION tts_release_credits(p_reservation_id TEXT)
RETURNS BIGINT  -- the credits given back (0: already released or settled, or never held)
LANGUAGE plpgsql
AS $$
DECLARE
    v_key TEXT;
    v_amount BIGINT;
BEGIN
    SELECT c.key_id INTO v_key FROM credit_reservations c WHERE c.reservation_id = p_reservation_id;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    PERFORM 1 FROM api_keys k WHERE k.key_id = v_key FOR UPDATE;
    DELETE FROM credit_reservations c WHERE c.reservation_id = p_reservation_id RETURNING c.amount INTO v_amount;
    IF NOT FOUND THEN
        RETURN 0;  -- released or settled meanwhile
    END IF;
    UPDATE api_keys k SET credit_balance = k.credit_balance + v_amount, updated_at = now()
     WHERE k.key_id = v_key AND k.credit_balance IS NOT NULL;
    RETURN v_amount;
END
$$;

CREATE OR REPLACE FUNCTION tts_settle_credits(p_request_id TEXT, p_key_id TEXT, p_charged BIGINT, p_outage BIGINT)
RETURNS TABLE (o_charged BIGINT, o_refund BIGINT, o_debited BIGINT)
LANGUAGE plpgsql
AS $$
DECLARE
    v_balance BIGINT;
    v_debited BIGINT;
    v_keep BIGINT;
    v_take BIGINT := 0;
BEGIN
    SELECT k.credit_balance INTO v_balance FROM api_keys k WHERE k.key_id = p_key_id FOR UPDATE;
    WITH gone AS (DELETE FROM credit_reservations c WHERE c.request_id = p_request_id RETURNING c.amount)
    SELECT coalesce(sum(gone.amount), 0) INTO v_debited FROM gone;
    v_keep := least(greatest(coalesce(p_charged, 0), 0), v_debited);
    IF v_balance IS NOT NULL THEN
        -- The outage spend is owed only up to the charge, and the balance (after the refund) cannot go below zero.
        v_take := greatest(0, least(least(coalesce(p_charged, 0), v_debited + greatest(coalesce(p_outage, 0), 0))
                                    - v_keep, v_balance + v_debited - v_keep));
        UPDATE api_keys k SET credit_balance = k.credit_balance + (v_debited - v_keep) - v_take, updated_at = now()
         WHERE k.key_id = p_key_id;
    END IF;
    RETURN QUERY SELECT v_keep + v_take, v_debited - v_keep, v_debited;
END
$$;

-- tts_store_requests (replaces 009's): store the rows not stored before (request_id is the idempotency key) and
-- settle each new row's credits (tts_settle_credits) in the same transaction: a replayed row conflicts and moves
-- nothing. The stored row says what was charged and refunded. A row spooled before 010 (no journaled reservation,
-- refund_credits set by the process) gives back its refund_credits as it says. Returns how many rows were new.
-- The PostgreSQL sink calls it as SQL and the Supabase sink over RPC: one statement of the rules for both.
CREATE OR REPLACE FUNCTION tts_store_requests(p_rows JSONB)
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    r tts_requests;
    v_new INTEGER := 0;
    v_settled RECORD;
BEGIN
    FOR r IN SELECT * FROM jsonb_populate_recordset(NULL::tts_requests, p_rows) LOOP
        INSERT INTO tts_requests (
            request_id, key_id, speaker, stream, format, sample_rate, temperature, top_k, top_p, max_tokens,
            repetition_penalty, seed, text_length, text, text_chunked, status, error_code, ttfb_ms, rtf,
            audio_duration_seconds, credits_charged, created_at, completed_at, client_request_id,
            chunks_retried, chunks_cut, guard_trips, refund_credits, outage_credits, transport)
        VALUES (r.request_id, r.key_id, r.speaker, coalesce(r.stream, FALSE), coalesce(r.format, 'wav'),
                r.sample_rate, r.temperature, r.top_k, r.top_p, r.max_tokens, r.repetition_penalty, r.seed,
                r.text_length, r.text, coalesce(r.text_chunked, FALSE), r.status, r.error_code, r.ttfb_ms, r.rtf,
                r.audio_duration_seconds, coalesce(r.credits_charged, 0), coalesce(r.created_at, now()),
                r.completed_at, r.client_request_id, coalesce(r.chunks_retried, 0), coalesce(r.chunks_cut, 0),
                r.guard_trips, coalesce(r.refund_credits, 0), coalesce(r.outage_credits, 0), r.transport)
        ON CONFLICT (request_id) DO NOTHING;
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        v_new := v_new + 1;
        IF r.key_id IS NULL OR NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.key_id = r.key_id) THEN
            CONTINUE;  -- no key in this database (static keys, anonymous): the process settled it, the row says so
        END IF;
        IF coalesce(r.refund_credits, 0) > 0
           AND NOT EXISTS (SELECT 1 FROM credit_reservations c WHERE c.request_id = r.request_id) THEN
            UPDATE api_keys k SET credit_balance = k.credit_balance + r.refund_credits, updated_at = now()
             WHERE k.key_id = r.key_id AND k.credit_balance IS NOT NULL;
            CONTINUE;
        END IF;
        SELECT * INTO v_settled FROM tts_settle_credits(r.request_id, r.key_id, coalesce(r.credits_charged, 0),
                                                        coalesce(r.outage_credits, 0));
        UPDATE tts_requests t SET credits_charged = v_settled.o_charged, refund_credits = v_settled.o_refund
         WHERE t.request_id = r.request_id;
    END LOOP;
    RETURN v_new;
END
$$;

-- Only the service role moves credits (as in 003 and 009).
REVOKE ALL ON FUNCTION tts_reserve_credits(TEXT, TEXT, TEXT, BIGINT) FROM PUBLIC;
REVOKE ALL ON FUNCTION tts_release_credits(TEXT) FROM PUBLIC;
REVOKE ALL ON FUNCTION tts_settle_credits(TEXT, TEXT, BIGINT, BIGINT) FROM PUBLIC;
REVOKE ALL ON FUNCTION tts_store_requests(JSONB) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        EXECUTE 'REVOKE ALL ON FUNCTION tts_reserve_credits(TEXT, TEXT, TEXT, BIGINT) FROM anon, authenticated';
        EXECUTE 'REVOKE ALL ON FUNCTION tts_release_credits(TEXT) FROM anon, authenticated';
        EXECUTE 'REVOKE ALL ON FUNCTION tts_settle_credits(TEXT, TEXT, BIGINT, BIGINT) FROM anon, authenticated';
        EXECUTE 'REVOKE ALL ON FUNCTION tts_store_requests(JSONB) FROM anon, authenticated';
    END IF;
END
$$;
