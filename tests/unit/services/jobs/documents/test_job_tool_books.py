"""Books as the common tools make them (tests/books/tools/README.md says how each was made, make.sh remakes them):
pandoc EPUB 3 and EPUB 2, EbookLib EPUB 3, LibreOffice EPUB, DOCX and PDF, python-docx DOCX, reportlab,
Chromium's print-to-PDF and groff. Each reads as the book's own chapters, title and author: no title, copyright
or dedication page is read, headings are sentences of their own and words stay whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.jobs.documents import Document, read_document

TOOLS = Path(__file__).resolve().parents[4] / "books" / "tools"
TITLES = ["The Ticket", "Departure", "Toward the Valley"]
BOOKS = {
    "pandoc-epub3.epub": TITLES,
    "pandoc-epub2.epub": TITLES,
    "ebooklib.epub": TITLES,
    "libreoffice.epub": TITLES,
    "libreoffice.docx": TITLES,
    "python-docx.docx": TITLES,
    "libreoffice.pdf": TITLES,
    "reportlab.pdf": TITLES,
    "chromium.pdf": TITLES,
    "groff.pdf": [
        "1. The Ticket",
        "2. Departure",
        "3. Toward the Valley",
    ],  # no outline: its headings as printed
}
FRONT_MATTER = ("Copyright", "All rights reserved", "Lantern Press", "ISBN", "For Tove", "Mira Okafor")


def _read(name: str) -> Document:
    return read_document((TOOLS / name).read_bytes(), filename=name)


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_a_tool_made_book_reads_as_its_own_chapters_title_and_author(name: str) -> None:
    document = _read(name)
    assert [c.title for c in document.chapters] == BOOKS[name]
    assert (document.title, document.author) == ("The Ticket Office", "Mira Okafor")
    text = "\n\n".join(c.text for c in document.chapters)
    for words in FRONT_MATTER:
        assert words not in text, f"{name}: front matter read ({words!r})"
    assert document.chapters[0].text.startswith(f"{BOOKS[name][0]}.\n\n")  # the title spoken once
    assert document.chapters[-1].text.endswith("everyone stepped off. Nobody looked back.")


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_headings_and_words_stay_whole(name: str) -> None:
    first, second = (c.text.split("\n\n") for c in _read(name).chapters[:2])
    assert first[1].startswith("The Ticket was printed on thin yellow card. AVATAR Tower stood")
    assert first[2].rstrip(".") == "A Wave at the Platform"  # a sub-heading: a paragraph of its own
    assert first[3] == "You may wave at the departing train, but it will not wave back."
    assert second[1] == "Departure came at seven. The conductor, Mr. Lyle, checked every ticket twice."
    assert re.sub("[’']", "'", second[2]).rstrip(".") == "Tomorrow's Victory"


@pytest.mark.parametrize("name", [n for n in sorted(BOOKS) if not n.endswith(".epub")])
def test_pdf_and_docx_sub_headings_are_read_as_sentences(name: str) -> None:
    assert "\n\nA Wave at the Platform.\n\n" in _read(name).chapters[0].text


def test_front_matter_rules_read_a_short_titled_prologue_and_leave_out_an_untitled_dedication() -> None:
    from services.jobs.documents.front import is_front_matter

    book, author = "The Ticket Office", "Mira Okafor"
    assert not is_front_matter(["For years the station stood empty."], "Prologue", book, author)
    assert is_front_matter(
        ["For years the station stood empty."], None, book, author
    )  # untitled: a dedication
    assert is_front_matter(["Anything at all."], "Copyright", book, author)
    assert is_front_matter(["The Ticket Office", "by Mira Okafor", "March 2026"], None, book, author)
    assert not is_front_matter(["The Ticket Office", "It was late when the train came."], None, book, author)
    assert not is_front_matter(["word " * 200], None, book, author)  # long: the book's
