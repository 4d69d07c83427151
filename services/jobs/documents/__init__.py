"""A job's document read into chapters: `read_document(data, filename=..., content_type=...)`, and
`read_document_isolated` (the same in a short-lived process with a memory and time bound: what the API calls).

The kind is the `kind` argument, else the file name's extension (`.epub`; `.pdf`; `.docx`; `.md`, `.markdown`;
`.txt`), else the content type, else sniffed: a ZIP archive whose `mimetype` entry is `application/epub+zip` is an
EPUB, one holding `word/document.xml` a DOCX, `%PDF-` a PDF, anything else plain text. Each kind has its module:
epub.py, pdf.py, docx.py, markdown.py, text.py; what they return and the limits they apply as they read are in
model.py.

The title is spoken: a chapter that starts at a heading or a titled marker begins with the title as its own line
(a period added when it has no closing punctuation), then a blank line, then the body. Titles the reader made up
("Chapter N", "Introduction") are not spoken. Markdown chapters keep their Markdown, read aloud later by the
service's Markdown reading; the others are plain text.

Text must be UTF-8 (a byte order mark is allowed). Everything a user can get wrong (an empty document, another
encoding, a broken or encrypted book, a ZIP bomb, too many characters or chapters) raises `DocumentError`, whose
message is meant for the user (the API answers 400 with it).
"""

from __future__ import annotations

import posixpath
from dataclasses import replace
from typing import Literal

from services.jobs.documents.archive import Archive
from services.jobs.documents.model import (
    Chapter,
    Cover,
    Document,
    DocumentError,
    Limits,
    decode_text,
    metadata_text,
)

__all__ = [
    "KINDS",
    "Chapter",
    "Cover",
    "Document",
    "DocumentError",
    "DocumentKind",
    "document_kind",
    "read_document",
]

DocumentKind = Literal["text", "markdown", "epub", "pdf", "docx"]
KINDS: tuple[DocumentKind, ...] = ("text", "markdown", "epub", "pdf", "docx")
_EXTENSIONS: dict[str, DocumentKind] = {
    ".epub": "epub",
    ".pdf": "pdf",
    ".docx": "docx",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".txt": "text",
    ".text": "text",
}
_CONTENT_TYPES: dict[str, DocumentKind] = {
    "application/epub+zip": "epub",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
}
_ZIP_MAGIC = b"PK\x03\x04"
ACCEPTED = "EPUB, PDF, DOCX, Markdown or UTF-8 text"


def read_document(
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    kind: DocumentKind | None = None,
    max_characters: int = 2_000_000,
    max_chapters: int = 500,
) -> Document:
    """`data` read into chapters (see the module docstring); DocumentError says what is wrong with it. Each
    reader stops at the first chapter or character over the limits."""
    limits = Limits(max_characters=max_characters, max_chapters=max_chapters)
    kind = kind or document_kind(data, filename=filename, content_type=content_type)
    if kind == "epub":
        from services.jobs.documents.epub import read_epub

        document = read_epub(data, limits)
    elif kind == "pdf":
        from services.jobs.documents.pdf import read_pdf

        document = read_pdf(data, limits)
    elif kind == "docx":
        from services.jobs.documents.docx import read_docx

        document = read_docx(data, limits)
    elif kind == "markdown":
        from services.jobs.documents.markdown import read_markdown_document

        document = read_markdown_document(_decode(data, limits), limits)
    elif kind == "text":
        from services.jobs.documents.text import read_text

        document = read_text(_decode(data, limits), limits)
    else:
        raise DocumentError(f"unknown document kind {kind!r}; accepted: {', '.join(KINDS)}")
    if not document.chapters:
        raise DocumentError("the document has no text to read")
    title, author = metadata_text(document.title), metadata_text(document.author)
    return replace(document, title=title, author=author)


def document_kind(
    data: bytes, *, filename: str | None = None, content_type: str | None = None
) -> DocumentKind:
    """The kind named by the file name, else by the content type, else sniffed from the bytes."""
    if filename:
        found = _EXTENSIONS.get(posixpath.splitext(filename.lower())[1])
        if found:
            return found
    if content_type:
        found = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if found:
            return found
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(_ZIP_MAGIC):
        return _zip_kind(data)
    return "text"


def _zip_kind(data: bytes) -> DocumentKind:
    """EPUB by its `mimetype` entry (its first bytes only), DOCX by its main part; other archives refused."""
    from services.jobs.documents.epub import sniff_epub

    if sniff_epub(data):
        return "epub"
    archive = Archive(data, "EPUB or DOCX")
    try:
        if archive.name("word/document.xml") is not None:
            return "docx"
    finally:
        archive.close()
    raise DocumentError(f"the file is a ZIP archive but not an EPUB book or a DOCX; accepted: {ACCEPTED}")


def _decode(data: bytes, limits: Limits) -> str:
    """The text of a text or Markdown document, refused at once when it is far over the character limit (its
    chapters keep all but markers, headings and blank lines: twice the limit, and some, could never fit)."""
    if data.startswith(b"%PDF-"):
        raise DocumentError(f"the file is a PDF; send it as a .pdf file (accepted: {ACCEPTED})")
    text = decode_text(data)
    if len(text) > 2 * limits.max_characters + 65_536:
        raise DocumentError(
            f"the document has more than {limits.max_characters:,} characters; "
            f"a job takes at most {limits.max_characters:,} characters"
        )
    return text
