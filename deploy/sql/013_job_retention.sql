-- Job retention (TTS_JOBS_RETENTION_S): when a job ended (done, failed, cancelled), epoch seconds; the job worker
-- deletes jobs that ended longer ago than the retention. NULL while a job is queued or running.
ALTER TABLE tts_jobs ADD COLUMN IF NOT EXISTS finished_at DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS tts_jobs_finished ON tts_jobs (finished_at) WHERE finished_at IS NOT NULL;
