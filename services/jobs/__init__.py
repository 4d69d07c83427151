"""Long-form jobs: a document (plain text, Markdown or EPUB) read into chapters, each chapter rendered to a file
in the background work class, and the whole work written as one book with chapter marks (M4B or MP3). A job's
state lives in the database and its files in the output directory, so it resumes after a restart from the last
finished chapter. `documents` reads a document into chapters and `book` joins the chapters' audio into one file;
both are pure (no database, no device). `store` keeps jobs (SQLite, or PostgreSQL where configured), `runner` is
the process's worker, `render` one chapter, `service` what the routes call."""

from services.jobs.records import ChapterRecord, JobOptions, JobRecord, job_view
from services.jobs.service import ChapterText, JobService

__all__ = ["ChapterRecord", "ChapterText", "JobOptions", "JobRecord", "JobService", "job_view"]
