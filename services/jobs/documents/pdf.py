"""PDF, read with pypdf: one chapter per top-level outline (bookmark) entry, from its page to the next one's (the
pages before the first entry are an "Introduction" when they hold text); without an outline the whole text is
one chapter. The title and author come from the document's information dictionary. Lines within a paragraph are
joined (a word hyphenated across a line end is made whole); blank lines stay paragraph breaks. A PDF with no text
layer (scanned pages) has no text to read; an encrypted one is refused. pypdf caps each stream it unpacks."""

from __future__ import annotations

import io
import re
from typing import Any

from services.jobs.documents.model import (
    UNTITLED_OPENING,
    Chapters,
    Document,
    DocumentError,
    Limits,
    one_line,
)

_HYPHENATED = re.compile(r"(\w)-\n(?=[a-z])")
_LINE_BREAK = re.compile(r"(?<!\n)\n(?!\n)")


def read_pdf(data: bytes, limits: Limits) -> Document:
    from pypdf import PdfReader  # imported where it is used: only the reading process needs it
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("the PDF is encrypted; send one that opens without a password")
        starts = _chapter_starts(reader)
        info: Any = reader.metadata or {}
        chapters = Chapters(limits)
        pages = len(reader.pages)
        if not starts or starts[0][0] > 0:
            starts.insert(0, (0, UNTITLED_OPENING if starts else "Chapter 1"))
        for i, (first, title) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else pages
            texts: list[str] = []
            for number in range(first, end):
                text = _page_text(reader.pages[number].extract_text() or "")
                chapters.check(sum(map(len, texts)) + len(text))
                if text:
                    texts.append(text)
            if texts:
                chapters.add(title, "\n\n".join(texts))
        title = one_line(str(info.get("/Title") or "")) or None
        author = one_line(str(info.get("/Author") or "")) or None
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise DocumentError(f"the PDF cannot be read ({str(error)[:200] or type(error).__name__})") from None
    return Document(title, chapters.chapters(), author=author)


def _chapter_starts(reader: Any) -> list[tuple[int, str]]:
    """(first page index, title) of each top-level outline entry that points at a page, in page order."""
    starts: dict[int, str] = {}
    for entry in reader.outline or ():
        if isinstance(entry, list):  # the children of the entry before: deeper levels stay in their chapter
            continue
        title = one_line(str(getattr(entry, "title", "") or ""))
        page = reader.get_destination_page_number(entry)
        if title and page is not None and page >= 0:
            starts.setdefault(page, title)
    return sorted(starts.items())


def _page_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _HYPHENATED.sub(r"\1", text)
    paragraphs = (one_line(p) for p in re.split(r"\n\s*\n", _LINE_BREAK.sub(" ", text)))
    return "\n\n".join(p for p in paragraphs if p)
