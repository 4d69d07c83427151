-- Server-generated request ids. `request_id` now always holds the server's id
-- (unique: the idempotency key of retried and replayed writes); the client's X-Request-ID, which clients may
-- reuse, is kept in its own column. Idempotent.

ALTER TABLE tts_requests ADD COLUMN IF NOT EXISTS client_request_id TEXT;
CREATE INDEX IF NOT EXISTS tts_requests_client_request_id_idx ON tts_requests (client_request_id);
