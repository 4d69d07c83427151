-- Durable refunds: credits owed back to the key when the request's row is first stored. The request
-- log's PostgreSQL sink adds them to api_keys.credit_balance in the statement that inserts the row, so a refund the
-- key store could not take during an outage is applied once, when the spooled row reaches the database. Idempotent.

ALTER TABLE tts_requests ADD COLUMN IF NOT EXISTS refund_credits BIGINT NOT NULL DEFAULT 0;
