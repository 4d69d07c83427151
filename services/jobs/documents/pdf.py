"""PDF, read with PDFium (pypdfium2): each page's text laid out by where its characters are (pdf_layout.py), so
words stay whole (kerning is not a space; groff's and ghostscript's spacing by position is), headings are
sentences of their own, and paragraphs stay apart.

Chapters start at the top-level outline (bookmark) entries, each where its title is printed on its page (else the
page's top); a PDF without an outline starts them at its top-level headings: the largest headings after the
book's title; where some of those are numbered, the ones numbered with the fewest levels ("1." before "1.1."),
since the numbering tells levels apart that the type may not (groff's .NH and .SH look alike). Before the first chapter, front.py leaves out title, copyright and dedication
pages by their title or text (an outline entry named Copyright or Dedication, or the book's title, is one);
what remains is an "Introduction". Without an outline or headings the whole text is one chapter. Running page
numbers are dropped.

The title and author come from the information dictionary, else from the title page: its largest heading, and
the short line under it. A PDF with no text layer (scanned pages) has no text to read; an encrypted one is
refused. The work is linear in the text: each outline title is looked for only among the next paragraphs of its
page, a bounded number of characters at each, and the outline's top level is bounded by the chapter limit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from services.jobs.documents.front import is_front_matter, is_label
from services.jobs.documents.model import (
    UNTITLED_OPENING,
    Chapters,
    Document,
    DocumentError,
    Limits,
    one_line,
    spoken,
)
from services.jobs.documents.pdf_layout import (
    Paragraph,
    body_style,
    page_lines,
    paragraphs,
    without_folios,
)

MAX_TITLE_CHARS = 300  # an outline title longer than this is cut before it is looked for
MAX_TITLE_BYTES = 1 << 20  # an outline title's UTF-16 bytes past this: the entry is left out
_SEARCH_PARAGRAPHS = 64  # an outline title is looked for among this many paragraphs after the one before
_NUMBERED = re.compile(r"^(\d{1,3}(?:\.\d{1,3})*)\.?\s")
_CHARS_PER_KEPT = 2  # a page's PDFium characters (spaces and line ends included) per character it can keep


@dataclass
class _Part:
    """A chapter being gathered: its title (None: the text before the first) and its pages' paragraphs."""

    title: str | None
    pages: list[list[str]] = field(default_factory=list)


def read_pdf(data: bytes, limits: Limits) -> Document:
    import pypdfium2 as pdfium  # imported where it is used: only the reading process needs it

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        if "password" in str(error).lower():
            raise DocumentError("the PDF is encrypted; send one that opens without a password") from None
        raise DocumentError(f"the PDF cannot be read ({str(error)[:200]})") from None
    try:
        pages = _pages(pdf, limits)
        info = pdf.get_metadata_dict(skip_empty=True)
        outline = _outline(pdf, len(pages), limits)
    finally:
        pdf.close()
    body = body_style(pages)
    laid = [paragraphs(lines, body) for lines in pages]
    title = one_line(info.get("Title", "")) or None
    author = one_line(info.get("Author", "")) or None
    page_title, page_author = _title_page(laid)
    title, author = title or page_title, author or page_author
    parts = _by_outline(laid, outline) if outline else _by_headings(laid, page_title)
    chapters = Chapters(limits)
    untitled = UNTITLED_OPENING if len(parts) > 1 else "Chapter 1"
    for part in parts:
        _close(chapters, part, title, author, untitled)
    return Document(title, chapters.chapters(), author=author)


def _pages(pdf: Any, limits: Limits) -> list[list[Any]]:
    """Every page's lines, folios dropped; refused once the text is far over the character limit."""
    pages: list[list[Any]] = []
    seen = 0
    budget = _CHARS_PER_KEPT * limits.max_characters + 65_536
    for index in range(len(pdf)):
        page = pdf[index]
        textpage = page.get_textpage()
        try:
            import pypdfium2.raw as raw

            seen += max(raw.FPDFText_CountChars(textpage.raw), 0)
            if seen > budget:  # refused before its characters are read one by one
                raise _too_long(limits)
            lines = without_folios(page_lines(textpage))
        finally:
            textpage.close()
            page.close()
        pages.append(lines)
    if sum(len(line.text) for lines in pages for line in lines) > budget:
        raise _too_long(limits)
    return pages


def _too_long(limits: Limits) -> DocumentError:
    return DocumentError(
        f"the document has more than {limits.max_characters:,} characters; "
        f"a job takes at most {limits.max_characters:,} characters"
    )


def _outline(pdf: Any, pages: int, limits: Limits) -> list[tuple[str, int]]:
    """(title, page index) of the top-level outline entries, in order; refused past the chapter limit."""
    import pypdfium2.raw as raw

    entries: list[tuple[str, int]] = []
    seen: set[int] = set()
    mark = raw.FPDFBookmark_GetFirstChild(pdf.raw, None)
    while mark:
        address = ctypes_address(mark)
        if address in seen:
            break  # a loop in the outline
        seen.add(address)
        if len(seen) > 2 * limits.max_chapters + 100:
            raise DocumentError(
                f"the document has more than {limits.max_chapters} chapters; "
                f"a job takes at most {limits.max_chapters} chapters"
            )
        title = _bookmark_title(raw, mark)
        page = _bookmark_page(raw, pdf.raw, mark)
        if title and 0 <= page < pages:
            entries.append((title, page))
        mark = raw.FPDFBookmark_GetNextSibling(pdf.raw, mark)
    return entries


def ctypes_address(pointer: Any) -> int:
    import ctypes

    return ctypes.addressof(pointer.contents)


def _bookmark_title(raw: Any, mark: Any) -> str:
    import ctypes

    size = raw.FPDFBookmark_GetTitle(mark, None, 0)
    # PDFium writes nothing into a buffer shorter than the whole title (a cut buffer reads as NULs), so the title
    # is read whole and cut after; one past MAX_TITLE_BYTES is no title (its entry is left out).
    if size <= 2 or size > MAX_TITLE_BYTES:
        return ""
    buffer = ctypes.create_string_buffer(size)
    raw.FPDFBookmark_GetTitle(mark, buffer, size)
    title = buffer.raw[: size - 2].decode("utf-16-le", "replace")
    return one_line(unicodedata.normalize("NFKC", title))[:MAX_TITLE_CHARS]


def _bookmark_page(raw: Any, document: Any, mark: Any) -> int:
    dest = raw.FPDFBookmark_GetDest(document, mark)
    if not dest:
        action = raw.FPDFBookmark_GetAction(mark)
        dest = raw.FPDFAction_GetDest(document, action) if action else None
    return int(raw.FPDFDest_GetDestPageIndex(document, dest)) if dest else -1


def _by_outline(laid: list[list[Paragraph]], outline: list[tuple[str, int]]) -> list[_Part]:
    """Parts starting where each outline entry's title is printed (else at its page's top)."""
    starts: dict[int, list[str]] = {}
    for title, number in outline:
        starts.setdefault(number, []).append(title)
    parts = [_Part(None)]
    for number, page in enumerate(laid):
        texts = [_text(p) for p in page]
        at = 0
        for title in starts.get(number, ()):
            found = _find(page, title, at)
            if found is None:  # not printed where it is looked for: the chapter starts here
                parts.append(_Part(title))
                continue
            parts[-1].pages.append(texts[at:found])
            rest = _after_title(page[found].text, title)
            at = found + 1
            parts.append(_Part(title, [[rest]] if rest else []))
        parts[-1].pages.append(texts[at:])
    return parts


def _find(page: list[Paragraph], title: str, start: int) -> int | None:
    """The first of the next `_SEARCH_PARAGRAPHS` paragraphs from `start` that begins with the title, else None.
    Each comparison reads at most about the title's length: bounded whatever the page holds."""
    wanted = _key(title)
    if not wanted:
        return None
    for index in range(start, min(len(page), start + _SEARCH_PARAGRAPHS)):
        if _key(page[index].text[: 2 * len(title) + 16]).startswith(wanted):
            return index
    return None


def _after_title(text: str, title: str) -> str:
    """A paragraph's text after the title it begins with ("" when it is only the title)."""
    words = len(title.split())
    rest = text.split(maxsplit=words)
    return rest[words] if len(rest) > words else ""


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _by_headings(laid: list[list[Paragraph]], book_title: str | None) -> list[_Part]:
    """Parts starting at the top-level headings (see the module docstring); one part when there are none."""
    headings = [
        (n, i, p)
        for n, page in enumerate(laid)
        for i, p in enumerate(page)
        if p.heading and not (book_title is not None and (n, i) == _first_heading(laid))
    ]
    if not headings:
        return [_Part(None, [[_text(p) for p in page] for page in laid])]
    top = max(round(p.size, 1) for _, _, p in headings)
    level = [(n, i, p) for n, i, p in headings if round(p.size, 1) >= top * 0.95]
    depths = {_depth(p.text) for _, _, p in level}
    depth = min(depths - {0} or depths)  # numbered headings are the outline where some are (groff's .NH, .SH)
    chosen = {(n, i) for n, i, p in level if _depth(p.text) == depth}
    parts = [_Part(None)]
    for number, page in enumerate(laid):
        parts[-1].pages.append([])
        for index, paragraph in enumerate(page):
            if (number, index) in chosen:
                parts.append(_Part(paragraph.text, [[]]))
            else:
                parts[-1].pages[-1].append(_text(paragraph))
    return parts


def _depth(text: str) -> int:
    numbered = _NUMBERED.match(text)
    return numbered.group(1).count(".") + 1 if numbered else 0


def _first_heading(laid: list[list[Paragraph]]) -> tuple[int, int] | None:
    for number, page in enumerate(laid[:2]):
        for index, paragraph in enumerate(page):
            if paragraph.heading:
                return number, index
    return None


def _title_page(laid: list[list[Paragraph]]) -> tuple[str | None, str | None]:
    """The first page's first heading when it is the largest type on that page (the book's title), and the short
    paragraph right under it (its author), if any."""
    found = _first_heading(laid)
    if found is None:
        return None, None
    number, index = found
    page = laid[number]
    heading = page[index]
    if any(p.size > heading.size for p in page) or len(heading.text.split()) > 20:
        return None, None
    following = page[index + 1] if index + 1 < len(page) else None
    author = None
    if following is not None and not following.heading and _name_like(following.text):
        author = re.sub(r"^by\s+", "", following.text, flags=re.IGNORECASE)
    return heading.text, author


def _name_like(text: str) -> bool:
    words = text.split()
    return 1 <= len(words) <= 8 and not re.search(r"\d|[.!?:;]$|©", text) and not is_label(text)


def _text(paragraph: Paragraph) -> str:
    return spoken(paragraph.text, "") if paragraph.heading else paragraph.text


def _close(
    chapters: Chapters, part: _Part, book_title: str | None, author: str | None, untitled: str
) -> None:
    """Add the part as a chapter unless it is empty, or front matter before the first chapter; `untitled` names
    the text before the first chapter (not spoken)."""
    pages = [[p for p in page if p] for page in part.pages]
    if not len(chapters) and part.title is not None:
        if is_front_matter([p for page in pages for p in page], part.title, book_title, author):
            return
    elif not len(chapters):  # the text before the first chapter: its title, copyright, dedication pages
        pages = [page for page in pages if not is_front_matter(page, None, book_title, author)]
    body = "\n\n".join(p for page in pages for p in page)
    if not body:
        return
    if part.title is None:
        chapters.add(untitled, body)
    else:
        chapters.add(part.title, spoken(part.title, body))
