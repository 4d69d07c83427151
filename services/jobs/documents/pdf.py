"""PDF, read with pypdf: one chapter per top-level outline (bookmark) entry, from where its title is printed on its
page (else the page's top) to the next one's; the text before the first entry is an "Introduction" when it holds
more than the title and author (a title page); without an outline the whole text is one chapter. Ligatures are
unfolded (NFKC), running page numbers dropped. The title and author come from the document's information
dictionary. Lines within a paragraph are joined (a word hyphenated across a line end is made whole); blank lines
stay paragraph breaks. A PDF with no text layer (scanned pages) has no text to read; an encrypted one is refused.
pypdf caps each stream it unpacks (and the reading process its memory)."""

from __future__ import annotations

import io
import re
import unicodedata
from typing import Any

from services.jobs.documents.model import (
    UNTITLED_OPENING,
    Chapters,
    Document,
    DocumentError,
    Limits,
    one_line,
    spoken,
)

_HYPHENATED = re.compile(r"(\w)-\n(?=[a-z])")
_FOLIO = re.compile(r"\d{1,4}|[ivxlc]{1,8}|-\s*\d{1,4}\s*-", re.IGNORECASE)
_LINE_BREAK = re.compile(r"(?<!\n)\n(?!\n)")


def read_pdf(data: bytes, limits: Limits) -> Document:
    from pypdf import PdfReader  # imported where it is used: only the reading process needs it
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("the PDF is encrypted; send one that opens without a password")
        starts = _chapter_starts(reader)
        chapters = Chapters(limits)
        title: str | None = None if starts else "Chapter 1"  # the chapter being read; None: the opening
        body: list[str] = []
        for number, page in enumerate(reader.pages):
            text = _without_folio(unicodedata.normalize("NFKC", page.extract_text() or ""))
            for heading in starts.get(number, ()):
                at = _find(text, heading)
                body.append(text[:at])
                if title is not None or not _title_page("".join(body), reader):
                    _close(chapters, title, body)
                title, body = heading, []
                text = text[at:]
                text = text[
                    len(_printed(text, heading)) :
                ]  # the heading as printed: spoken once, as the title
            body.append(text)
            chapters.check(sum(map(len, body)))
        info: Any = reader.metadata or {}
        book_title = one_line(str(info.get("/Title") or "")) or None
        author = one_line(str(info.get("/Author") or "")) or None
        _close(chapters, title, body)
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise DocumentError(f"the PDF cannot be read ({str(error)[:200] or type(error).__name__})") from None
    return Document(book_title, chapters.chapters(), author=author)


def _chapter_starts(reader: Any) -> dict[int, list[str]]:
    """{page index: titles of the top-level outline entries that start on it, in outline order}."""
    starts: dict[int, list[str]] = {}
    for entry in reader.outline or ():
        if isinstance(entry, list):  # the children of the entry before: deeper levels stay in their chapter
            continue
        title = one_line(unicodedata.normalize("NFKC", str(getattr(entry, "title", "") or "")))
        page = reader.get_destination_page_number(entry)
        if title and page is not None and page >= 0:
            starts.setdefault(page, []).append(title)
    return starts


def _without_folio(text: str) -> str:
    """The page without a running page number as its first or last line."""
    lines = text.strip().split("\n")
    while lines and _FOLIO.fullmatch(lines[-1].strip()):
        lines.pop()
    while lines and _FOLIO.fullmatch(lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines)


def _title_page(opening: str, reader: Any) -> bool:
    """Whether the text before the first chapter holds only the document's title and author (a title page)."""
    info: Any = reader.metadata or {}
    words = set(one_line(f"{info.get('/Title') or ''} {info.get('/Author') or ''}").lower().split())
    return bool(words) and set(opening.lower().split()) <= words


def _find(text: str, heading: str) -> int:
    """Where the heading is printed on the page (whitespace between its words may differ), else 0: the page."""
    found = re.search(r"\s+".join(map(re.escape, heading.split())), text)
    return found.start() if found else 0


def _printed(text: str, heading: str) -> str:
    found = re.match(r"\s*" + r"\s+".join(map(re.escape, heading.split())), text)
    return found.group(0) if found else ""


def _close(chapters: Chapters, title: str | None, pages: list[str]) -> None:
    body = _paragraphs("\n".join(pages))
    if not body:
        return
    if title is None:
        chapters.add(UNTITLED_OPENING, body)
    elif title == "Chapter 1":
        chapters.add(title, body)
    else:
        chapters.add(title, spoken(title, body))


def _paragraphs(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _HYPHENATED.sub(r"\1", text)
    paragraphs = (one_line(p) for p in re.split(r"\n\s*\n", _LINE_BREAK.sub(" ", text)))
    return "\n\n".join(p for p in paragraphs if p)
