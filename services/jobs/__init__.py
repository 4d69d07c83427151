"""Long-form jobs: a document (plain text, Markdown, EPUB, PDF or DOCX) read into chapters, each chapter rendered to a file
in the background work class, and the whole work written as one book with chapter marks (M4B or MP3). A job's
state lives in the database and its files in the output directory, so it resumes after a restart from the last
finished chapter. `documents` reads a document into chapters and `book` joins the chapters' audio into one file;
both are pure (no database, no device). `store` keeps jobs (SQLite, or PostgreSQL where configured), `runner` is
the process's worker, `render` one chapter, `service` what the routes call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.jobs.records import ChapterRecord, JobOptions, JobRecord, job_view
    from services.jobs.service import ChapterText, JobService

__all__ = ["ChapterRecord", "ChapterText", "JobOptions", "JobRecord", "JobService", "job_view"]


def __getattr__(name: str) -> Any:
    """Imported on first use: the document reader's process imports `services.jobs.documents` without the
    service (and the audio stack under it)."""
    if name in ("ChapterText", "JobService"):
        from services.jobs import service

        return getattr(service, name)
    if name in __all__:
        from services.jobs import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
