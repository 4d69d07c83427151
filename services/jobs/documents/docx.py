"""DOCX (Word), read with python-docx after the archive's checks (archive.py): chapters start at `Heading 1`
paragraphs (the outline's top level), each chapter's heading spoken as its first line; without a `Heading 1` the
whole text is one chapter. Deeper headings stay in their chapter, spoken as sentences of their own.

Before the first chapter, title-page paragraphs (the Title, Subtitle, Author, Date and Abstract Title styles) are
not read, and each page of the rest (pages end at page breaks) is left out when front.py finds it a title,
copyright or dedication page; what remains is an "Introduction".

The title and author come from the package's core properties, found through its relationships whatever the
relationship type's spelling (LibreOffice writes `.../officedocument/2006/...`, which python-docx does not know and
answers with made-up defaults), else `docProps/core.xml`; else the `Title` paragraph."""

from __future__ import annotations

import io
import posixpath
from typing import Any

from services.jobs.documents.archive import Archive, local
from services.jobs.documents.front import is_front_matter
from services.jobs.documents.model import (
    SENTENCE_CLOSE,
    UNTITLED_OPENING,
    Chapters,
    Document,
    DocumentError,
    Limits,
    one_line,
    spoken,
)

_TITLE_PAGE_STYLES = frozenset({"title", "subtitle", "author", "date", "abstract title"})
_CORE_PROPERTIES = "/metadata/core-properties"  # the end of the relationship type, in either spelling
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def read_docx(data: bytes, limits: Limits) -> Document:
    archive = Archive(data, "DOCX")  # sizes, ratios and methods checked before python-docx unpacks a part
    try:
        properties = _core_properties(archive)
    finally:
        archive.close()
    import docx  # imported where it is used: only the reading process needs it

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as error:  # python-docx raises its own, KeyError, lxml and zipfile errors alike
        raise DocumentError(f"the DOCX cannot be read ({str(error)[:200] or type(error).__name__})") from None
    chapters = Chapters(limits)
    title: str | None = None
    heading: str | None = None
    body: list[str] = []
    opening: list[list[str]] = [[]]  # the pages before the first chapter
    size = 0
    for paragraph in document.paragraphs:
        text = one_line(paragraph.text)
        style = (paragraph.style.name if paragraph.style is not None else "").lower()
        if heading is None and _page_break(paragraph) and opening[-1]:
            opening.append([])
        if not text:
            continue
        if style in _TITLE_PAGE_STYLES:
            if style == "title" and title is None:
                title = text
            continue
        if style == "heading 1":
            if heading is None:
                body = _opening(opening, properties.get("title") or title, properties.get("creator"))
            _close(chapters, heading, body, UNTITLED_OPENING)
            heading, body, size = text, [], 0
            continue
        if style.startswith("heading") and not text.endswith(SENTENCE_CLOSE):
            text = f"{text}."  # a section heading read as a sentence of its own
        (body if heading is not None else opening[-1]).append(text)
        size += len(text) + 2
        chapters.check(size)
    if heading is None:  # no chapters: the whole text is one, its title page left out
        body = _opening(opening, properties.get("title") or title, properties.get("creator"))
    _close(chapters, heading, body, UNTITLED_OPENING if len(chapters) else title or "Chapter 1")
    return Document(
        properties.get("title") or title, chapters.chapters(), author=properties.get("creator") or None
    )


def _opening(pages: list[list[str]], title: str | None, author: str | None) -> list[str]:
    """The paragraphs before the first chapter, less its title, copyright and dedication pages."""
    return [p for page in pages if not is_front_matter(page, None, title, author) for p in page]


def _page_break(paragraph: Any) -> bool:
    """Whether a page starts at (or inside) this paragraph: a page break in it, or `pageBreakBefore`."""
    element = paragraph._p  # python-docx's lxml element
    for node in element.iter(f"{_W}br", f"{_W}pageBreakBefore"):
        if local(node.tag) == "pageBreakBefore" or node.get(f"{_W}type") == "page":
            return True
    return False


def _core_properties(archive: Archive) -> dict[str, str]:
    """{"title": ..., "creator": ...} from the core-properties part, each one line; {} when there is none."""
    path = "docProps/core.xml"
    rels = archive.name("_rels/.rels")
    if rels is not None:
        for rel in archive.xml(rels).iter():
            if local(rel.tag) == "Relationship" and rel.get("Type", "").lower().endswith(_CORE_PROPERTIES):
                target = rel.get("Target", "").lstrip("/")
                path = posixpath.normpath(target) if target else path
                break
    name = archive.name(path)
    if name is None:
        return {}
    found: dict[str, str] = {}
    for element in archive.xml(name):
        key, text = local(element.tag), one_line(element.text or "")
        if key in ("title", "creator") and text and key not in found:
            found[key] = text
    return found


def _close(chapters: Chapters, heading: str | None, body: list[str], opening: str) -> None:
    """End a chapter (a heading with nothing under it is none); `opening` titles text before any heading."""
    text = "\n\n".join(body)
    if text and heading is not None:
        chapters.add(heading, spoken(heading, text))
    elif text:
        chapters.add(opening, text)
