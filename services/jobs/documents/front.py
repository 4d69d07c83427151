"""Front matter recognised by what it says, for the formats that do not mark it (EPUB 2, DOCX, PDF) and the tools
that do not (LibreOffice labels a part with no heading "Section N"; pandoc's EPUB 2 drops `epub:type`).

A part of a book before its first chapter is front matter, not read, when its title is a front-matter label
(Title Page, Copyright, Dedication, Contents, LibreOffice's "Section 1", ...) or the book's own title; an untitled
part, when it is short and every paragraph of it is the title, an author, a date, a copyright or publishing line
(©, "All rights reserved", ISBN, "First published", an edition) or a dedication ("For ...", "To ..."). A part
with any other title is the book's, however short ("Prologue"). The rule is only applied before the first
chapter: later parts are the book's, whatever they say. Every check is linear in the text.
"""

from __future__ import annotations

import re

# Labels a tool or an author gives a front-matter page (compared lower-case, without closing punctuation).
LABELS = frozenset(
    {
        "title",
        "title page",
        "titlepage",
        "half title",
        "half-title",
        "copyright",
        "copyright page",
        "copyrights",
        "imprint",
        "colophon",
        "dedication",
        "contents",
        "table of contents",
        "toc",
        "also by",
        "cover",
        "front matter",
        "frontmatter",
        "legal notice",
        "rights",
    }
)
_SECTION_LABEL = re.compile(
    r"section \d{1,4}"
)  # LibreOffice's EPUB export: a part that starts with no heading
_ALSO_BY = re.compile(r"(other books|also) by\b")
# A paragraph a title or copyright page holds: a copyright or publishing line, an ISBN, a date, an edition.
_PUBLISHING = re.compile(
    r"©|\(c\)|\bcopyright\b|\ball rights reserved\b|\bisbn\b|\bpublished\b|\bpublisher\b|\bprinted in\b"
    r"|\bedition\b|\bimprint\b|\blibrary of congress\b|\bcataloging\b|\blicensed under\b|\bpress\b|\bdraft\b"
    r"|\bversion\b|^\s*by\s+[\w.' -]{1,60}$",
    re.IGNORECASE,
)
_DATE = re.compile(
    r"^\W*(\d{1,2}\W+)?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\W+(\d{1,2},?\W+)?\d{4}\W*$"
    r"|^\W*\d{4}([-/.]\d{1,2}([-/.]\d{1,2})?)?\W*$|^\W*\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\W*$",
    re.IGNORECASE,
)
_DEDICATION = re.compile(r"^\W*(for|to|in memory of|dedicated to)\b", re.IGNORECASE)
MAX_WORDS = 120  # a title, copyright or dedication page is short; a part longer than this is the book's
MAX_DEDICATION_WORDS = 40


def is_label(title: str, book_title: str | None = None) -> bool:
    """Whether a part's title says it is front matter (or is the book's own title: a title page)."""
    name = _plain(title)
    if not name:
        return False
    if name in LABELS or _SECTION_LABEL.fullmatch(name) or _ALSO_BY.match(name):
        return True
    return book_title is not None and name == _plain(book_title)


def is_made_up(title: str) -> bool:
    """Whether a title is one a tool made up for a part with no heading (LibreOffice's "Section N")."""
    return bool(_SECTION_LABEL.fullmatch(_plain(title)))


def is_front_matter(
    paragraphs: list[str], title: str | None, book_title: str | None, author: str | None
) -> bool:
    """Whether a part before the first chapter is a title, copyright or dedication page (see the module doc)."""
    if (
        title is not None
    ):  # a titled part is front matter by its title alone: "Prologue" is read, however short
        return is_label(title, book_title)
    words = sum(len(p.split()) for p in paragraphs)
    if not paragraphs or words > MAX_WORDS:
        return not paragraphs
    known = _words(f"{book_title or ''} {author or ''}")
    for paragraph in paragraphs:
        if known and _words(paragraph) <= known:
            continue
        if _DATE.match(paragraph) or _PUBLISHING.search(paragraph):
            continue
        if _DEDICATION.match(paragraph) and words <= MAX_DEDICATION_WORDS:
            continue
        return False
    return True


def _plain(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split()).strip(" .:;,!?")


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))
