-- Long-form jobs (services/jobs): a job per document, owned by a key id, and its chapters, rendered one at a time.
-- A running job holds a lease (lease_owner until lease_expires, epoch seconds): a process that dies leaves it to
-- expire and another takes the job up again from its first chapter not done.
CREATE TABLE IF NOT EXISTS tts_jobs (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    title TEXT,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    error_code TEXT,
    error_message TEXT,
    book_done BOOLEAN NOT NULL DEFAULT false,
    lease_owner TEXT,
    lease_expires DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tts_jobs_key ON tts_jobs (key_id, created_at);
CREATE INDEX IF NOT EXISTS tts_jobs_open ON tts_jobs (status, lease_expires);
CREATE TABLE IF NOT EXISTS tts_job_chapters (
    job_id TEXT NOT NULL REFERENCES tts_jobs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    status TEXT NOT NULL,
    audio_seconds DOUBLE PRECISION,
    render_seconds DOUBLE PRECISION,
    request_id TEXT,
    PRIMARY KEY (job_id, idx)
);
ALTER TABLE tts_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE tts_job_chapters ENABLE ROW LEVEL SECURITY;
