-- Fair turns between keys and live progress (services/jobs/store.py): `claimed_at` is when the job's latest chapter
-- was claimed (the next chapter goes to the key whose latest claim is oldest); `heartbeat_at` is the holder's last
-- write, so a job whose worker died shows as stalled instead of running.
ALTER TABLE tts_jobs ADD COLUMN IF NOT EXISTS claimed_at DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE tts_jobs ADD COLUMN IF NOT EXISTS heartbeat_at DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS tts_jobs_turns ON tts_jobs (key_id, claimed_at);
