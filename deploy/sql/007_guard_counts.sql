-- Generation guards: per request, the text chunks generated again with a new seed, the streamed chunks
-- cut at a detection point, and every trip as "guard:action" (comma-separated). Idempotent.

ALTER TABLE tts_requests ADD COLUMN IF NOT EXISTS chunks_retried INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tts_requests ADD COLUMN IF NOT EXISTS chunks_cut INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tts_requests ADD COLUMN IF NOT EXISTS guard_trips TEXT;
