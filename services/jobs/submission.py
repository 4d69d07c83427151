"""A job as a client submits it (`JobSubmission`: the document's bytes and the job's fields), and the document read
from it: in a process of its own (services/jobs/documents/isolated.py), so a bomb costs the server nothing, and
refused with a 400 naming the file when it cannot be read or holds text a database cannot store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.errors import ServiceError
from services.jobs.text_checks import unstorable

if TYPE_CHECKING:
    from services.jobs.documents import Document, DocumentKind
    from shared.settings.library import JobsSettings


@dataclass(frozen=True)
class JobSubmission:
    """What `POST /v1/tts/jobs` carries, parsed (the route's body model holds the defaults): the document (a file's
    bytes with its name and type, or JSON text with neither) and the job's fields, not yet checked."""

    data: bytes
    filename: str | None  # None, with content_type: JSON text
    content_type: str | None
    input_format: DocumentKind | None  # None: from the file's name or type (JSON text: plain text)
    voice: str | None
    format: str
    book_format: str | None
    sample_rate: int
    speed: float | None
    title: str | None
    author: str | None
    lexicon: tuple[tuple[str, str, bool, bool], ...]  # (text, alias, case_sensitive, word_boundaries)
    dictionaries: tuple[tuple[str, str | None], ...]  # (dictionary_id, version_id)

    @property
    def kind(self) -> DocumentKind | None:
        """JSON text is plain text unless it says Markdown; a file's kind comes from its name or type unless given."""
        return self.input_format or ("text" if self.filename is None else None)


async def read_submitted(submission: JobSubmission, settings: JobsSettings, key: str = "") -> Document:
    """The submitted document, read in a process of its own, in `key`'s fair share of the readers; JSON text in a lane
    of its own that never waits behind an upload. ServiceError VALIDATION_ERROR naming `file`."""
    from services.jobs.documents import DocumentError
    from services.jobs.documents.isolated import read_document_isolated

    try:
        document = await read_document_isolated(
            submission.data,
            timeout_s=settings.jobs_read_timeout_s,
            memory_mb=settings.jobs_read_memory_mb,
            key=key,
            lane="upload" if submission.filename is not None else "text",
            filename=submission.filename,
            content_type=submission.content_type,
            kind=submission.kind,
            max_characters=settings.jobs_max_chars,
        )
    except DocumentError as exc:
        raise ServiceError("VALIDATION_ERROR", f"The document cannot be read: {exc}", "file") from None
    texts = [
        document.title or "",
        document.author or "",
        *(f"{c.title}\n{c.text}" for c in document.chapters),
    ]
    bad = unstorable({"file": texts})  # NUL, control characters, lone surrogates: refused before a database
    if bad is not None:
        raise ServiceError("VALIDATION_ERROR", f"The document cannot be read: {bad[1]}.", "file")
    return document
