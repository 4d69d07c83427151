"""Books made by real tools (pandoc EPUB 3 and EPUB 2 with nested tables of contents and front matter, a pandoc
DOCX, a groff PDF; tests/books/README.md says how each was made): the book's own chapter titles, title, author and
cover come out, the front matter does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.jobs.documents import Document, read_document

BOOKS = Path(__file__).resolve().parents[4] / "books"
TITLES = ["Definitions and Basic Permissions", "Conveying Copies", "Termination"]


def _read(name: str) -> Document:
    return read_document((BOOKS / name).read_bytes(), filename=name)


@pytest.mark.parametrize("name", ["nested.epub", "nested-epub2.epub", "license.docx", "license.pdf"])
def test_a_real_book_reads_as_its_table_of_contents_titles_it_at_the_top_level(name: str) -> None:
    document = _read(name)
    assert [c.title for c in document.chapters] == TITLES  # not "0. Definitions.", not the title page
    assert document.title == "The Little Licence"
    assert document.author == "Ada Writer"
    first = document.chapters[0].text
    assert first.startswith("Definitions and Basic Permissions.\n\n")  # the title spoken once, as a sentence
    assert "Source Code." in first and "Conveying" not in first  # its sections stay in it
    assert "Ada Writer" not in "".join(c.text for c in document.chapters)  # the title page is not read
    assert document.chapters[2].text.endswith("cured within thirty days.")  # no page number after it


@pytest.mark.parametrize("name", ["nested.epub", "nested-epub2.epub"])
def test_the_epub_cover_comes_out_as_the_picture_it_is(name: str) -> None:
    cover = _read(name).cover
    assert cover is not None and cover.media_type == "image/png"
    assert cover.data == (BOOKS / "cover.png").read_bytes()


def test_sections_are_read_in_their_chapter_as_paragraphs() -> None:
    text = _read("nested.epub").chapters[1].text
    assert text == (
        "Conveying Copies.\n\nYou may convey verbatim copies of the work.\n\n"
        "2. Basic Permissions.\n\nAll rights granted are irrevocable."
    )
    assert _read("license.docx").chapters[1].text == text


def test_a_pdf_sent_without_a_name_is_sniffed_not_read_as_text() -> None:
    data = (BOOKS / "license.pdf").read_bytes()
    assert [c.title for c in read_document(data).chapters] == TITLES
    assert [c.title for c in read_document(data, content_type="application/octet-stream").chapters] == TITLES
    docx = (BOOKS / "license.docx").read_bytes()
    assert [c.title for c in read_document(docx).chapters] == TITLES


def test_words_ghostscript_places_apart_without_a_space_are_apart() -> None:
    text = "\n\n".join(c.text for c in _read("license.pdf").chapters)
    assert "The terms below are used throughout this licence." in text
    assert "You may convey verbatim copies of the work." in text
