"""DOCX (Word), read with python-docx after the archive's checks (archive.py): chapters start at `Heading 1`
paragraphs (the outline's top level), each chapter's heading spoken as its first line; text before the first is an
"Introduction" when it holds any; without a `Heading 1` the whole text is one chapter. Deeper headings stay in
their chapter. Title, subtitle, author and date paragraphs (a title page) are not read. The title and author come
from the document's properties, else its `Title` paragraph."""

from __future__ import annotations

import io

from services.jobs.documents.archive import Archive
from services.jobs.documents.model import (
    UNTITLED_OPENING,
    Chapters,
    Document,
    DocumentError,
    Limits,
    one_line,
    spoken,
)

_TITLE_PAGE_STYLES = frozenset({"title", "subtitle", "author", "date", "abstract title"})


def read_docx(data: bytes, limits: Limits) -> Document:
    Archive(data, "DOCX").close()  # sizes, ratios and methods checked before python-docx unpacks a part
    import docx  # imported where it is used: only the reading process needs it

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as error:  # python-docx raises its own, KeyError, lxml and zipfile errors alike
        raise DocumentError(f"the DOCX cannot be read ({str(error)[:200] or type(error).__name__})") from None
    chapters = Chapters(limits)
    title: str | None = None
    heading: str | None = None
    body: list[str] = []
    size = 0
    for paragraph in document.paragraphs:
        text = one_line(paragraph.text)
        style = (paragraph.style.name if paragraph.style is not None else "").lower()
        if not text:
            continue
        if style in _TITLE_PAGE_STYLES:
            if style == "title" and title is None:
                title = text
            continue
        if style == "heading 1":
            _close(chapters, heading, body, UNTITLED_OPENING)
            heading, body, size = text, [], 0
            continue
        body.append(text)
        size += len(text) + 2
        chapters.check(size)
    _close(chapters, heading, body, UNTITLED_OPENING if len(chapters) else title or "Chapter 1")
    properties = document.core_properties
    return Document(
        one_line(properties.title or "") or title,
        chapters.chapters(),
        author=one_line(properties.author or "") or None,
    )


def _close(chapters: Chapters, heading: str | None, body: list[str], opening: str) -> None:
    """End a chapter (a heading with nothing under it is none); `opening` titles text before any heading."""
    text = "\n\n".join(body)
    if text and heading is not None:
        chapters.add(heading, spoken(heading, text))
    elif text:
        chapters.add(opening, text)
