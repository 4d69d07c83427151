"""Long-form jobs: a document (text, Markdown, EPUB) rendered chapter by chapter in the device's idle time
(`work_class="background"`), each chapter to a file and charged when done, the whole work to one book with
chapter marks. State in `store` (SQLite, or PostgreSQL where configured), work in `runner`, one chapter in
`render`, what the routes call in `service`; documents are read by `documents`, books written by `book`."""

from services.jobs.records import ChapterRecord, JobOptions, JobRecord, job_view
from services.jobs.service import ChapterText, JobService

__all__ = ["ChapterRecord", "ChapterText", "JobOptions", "JobRecord", "JobService", "job_view"]
