"""A job's document read into chapters: EPUB (built here with ebooklib), Markdown headings, text markers, errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from ebooklib import epub

from services.jobs.documents import Chapter, DocumentError, document_kind, read_document

CHAPTERS = [
    ("The Harbour", "<p>The boats came in at dawn.</p><p>Nobody was waiting.</p>"),
    ("A Letter", "<p>It was addressed to &quot;Mara&quot; &amp; her brother.</p>"),
    ("Home", "<p>They walked the last mile<br/>in silence.</p>"),
]


def build_epub(
    tmp_path: Path,
    chapters: list[tuple[str, str]] = CHAPTERS,
    *,
    toc: bool = True,
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    """An EPUB 3 with a cover page, a nav document, the chapters (each with its heading) and `extra` pages
    (file name, body) without a table of contents entry, each placed after the chapter of the same index."""
    book = epub.EpubBook()
    book.set_identifier("test-book")
    book.set_title("The Test Book")
    book.set_language("en")
    cover = epub.EpubHtml(
        title="Cover",
        file_name="cover.xhtml",
        content='<html><body><div><img src="cover.jpg" alt=""/></div></body></html>',
    )
    book.add_item(cover)
    items = []
    spine: list[object] = [cover, "nav"]
    for i, (title, body) in enumerate(chapters):
        item = epub.EpubHtml(title=title, file_name=f"chap_{i + 1}.xhtml", lang="en")
        item.content = f"<html><body><h1>{title}</h1>{body}</body></html>"
        book.add_item(item)
        items.append(item)
        spine.append(item)
        if extra and i < len(extra):
            name, extra_body = extra[i]
            more = epub.EpubHtml(
                title=name, file_name=name, content=f"<html><body>{extra_body}</body></html>"
            )
            book.add_item(more)
            spine.append(more)
    book.toc = items if toc else []
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = spine
    path = tmp_path / "book.epub"
    epub.write_epub(str(path), book)
    return path.read_bytes()


def test_epub_chapters_come_back_in_spine_order_with_their_titles_and_text(tmp_path: Path) -> None:
    document = read_document(build_epub(tmp_path), filename="book.epub")
    assert document.title == "The Test Book"
    assert [c.title for c in document.chapters] == ["The Harbour", "A Letter", "Home"]
    assert document.chapters[0].text == "The Harbour.\n\nThe boats came in at dawn.\n\nNobody was waiting."
    assert document.chapters[1].text == 'A Letter.\n\nIt was addressed to "Mara" & her brother.'
    assert document.chapters[2].text == "Home.\n\nThey walked the last mile\n\nin silence."


def test_epub_is_sniffed_without_a_name_or_type(tmp_path: Path) -> None:
    data = build_epub(tmp_path)
    assert document_kind(data) == "epub"
    assert document_kind(data, content_type="application/octet-stream") == "epub"
    assert len(read_document(data).chapters) == 3


def test_epub_without_toc_titles_from_headings_and_a_page_without_either_continues_its_chapter(
    tmp_path: Path,
) -> None:
    extra = [("chap_1b.xhtml", "<p>The second half.</p>")]
    with_toc = read_document(build_epub(tmp_path, extra=extra), kind="epub")
    assert [c.title for c in with_toc.chapters] == ["The Harbour", "A Letter", "Home"]
    assert with_toc.chapters[0].text.endswith("Nobody was waiting.\n\nThe second half.")
    no_toc = read_document(build_epub(tmp_path, toc=False, extra=extra), kind="epub")
    assert [c.title for c in no_toc.chapters] == ["The Harbour", "Chapter 2", "A Letter", "Home"]


def test_epub2_table_of_contents_names_each_file_by_its_shallowest_entry(tmp_path: Path) -> None:
    """An NCX-only book (no EPUB 3 nav) whose part opens in its first chapter's file, pages without headings: the
    table of contents' top level titles that file (as a chapter's title wins over its first section's); a file
    only a deeper entry points into is titled by it."""
    book = epub.EpubBook()
    book.set_identifier("ncx-book")
    book.set_title("Parts")
    items = []
    for i in range(3):
        item = epub.EpubHtml(title=f"t{i}", file_name=f"text/c{i}.xhtml")
        item.content = f"<html><body><p>Body {i}.</p></body></html>"
        book.add_item(item)
        items.append(item)
    book.toc = [
        (
            epub.Section("Part One"),
            [epub.Link("text/c0.xhtml", "Zero", "c0"), epub.Link("text/c1.xhtml#a", "One", "c1")],
        ),
        epub.Link("text/c2.xhtml", "Two", "c2"),
    ]
    book.add_item(epub.EpubNcx())
    book.spine = items
    path = tmp_path / "ncx.epub"
    epub.write_epub(str(path), book)
    document = read_document(path.read_bytes(), kind="epub")
    assert document.chapters == (
        Chapter("Part One", "Body 0."),
        Chapter("One", "Body 1."),
        Chapter("Two", "Body 2."),
    )


def test_epub_skips_footnote_references_page_breaks_and_scripts(tmp_path: Path) -> None:
    body = (
        '<p>A claim<a epub:type="noteref" href="#n1">1</a> stands.<span epub:type="pagebreak" title="7"/></p>'
        "<script>var x = 1;</script>"
        '<aside epub:type="footnote" id="n1"><p>The note.</p></aside>'
    )
    document = read_document(build_epub(tmp_path, [("Notes", body)]), kind="epub")
    assert document.chapters == (Chapter("Notes", "Notes.\n\nA claim stands."),)


def test_broken_and_encrypted_epubs_are_refused(tmp_path: Path) -> None:
    data = build_epub(tmp_path)
    with pytest.raises(DocumentError, match="EPUB"):
        read_document(data[: len(data) // 2], kind="epub")
    with pytest.raises(DocumentError, match="not an EPUB"):
        read_document(b"PK\x03\x04 not really a zip")
    drm = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(drm, "w") as target:
        for entry in source.infolist():
            target.writestr(entry, source.read(entry))
        target.writestr(
            "META-INF/encryption.xml",
            '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"'
            ' xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
            '<enc:CipherReference URI="EPUB/chap_1.xhtml"/></enc:CipherData></enc:EncryptedData></encryption>',
        )
    with pytest.raises(DocumentError, match="DRM"):
        read_document(drm.getvalue(), filename="book.epub")


def test_a_zip_that_is_not_an_epub_is_refused() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as target:
        target.writestr("mimetype", "application/zip")
    with pytest.raises(DocumentError, match="not an EPUB"):
        read_document(archive.getvalue())


MARKDOWN = """\
# The Book

A short foreword.

## One

First *chapter*.

### A part of one

Still one.

## Two: the **end**

```
## not a heading
```
"""


def test_markdown_splits_at_the_top_most_repeated_heading_level() -> None:
    document = read_document(MARKDOWN.encode(), filename="book.md")
    assert document.title == "The Book"
    assert [c.title for c in document.chapters] == ["The Book", "One", "Two: the end"]
    assert document.chapters[0].text == "The Book.\n\nA short foreword."
    assert document.chapters[1].text == "One.\n\nFirst *chapter*.\n\n### A part of one\n\nStill one."
    assert document.chapters[2].text == "Two: the end.\n\n```\n## not a heading\n```"


def test_markdown_setext_headings_front_matter_and_an_untitled_opening() -> None:
    text = "---\ntitle: Notes\n---\nBefore.\n\nFirst\n=====\n\nOne.\n\nSecond?\n======\nTwo.\n"
    document = read_document(text.encode(), content_type="text/markdown; charset=utf-8")
    assert document.title == "Notes"
    assert document.chapters == (
        Chapter("Notes", "Before."),
        Chapter("First", "First.\n\nOne."),
        Chapter("Second?", "Second?\n\nTwo."),
    )


def test_markdown_without_a_repeated_level_is_one_chapter_and_empty_sections_are_dropped() -> None:
    single = read_document(b"# Only\n\nText.\n\n## Sub\n\nMore.", kind="markdown")
    assert single.title == "Only"
    assert single.chapters == (Chapter("Only", "# Only\n\nText.\n\n## Sub\n\nMore."),)
    sparse = read_document(b"# A\n\n# B\n\nText of B.\n", kind="markdown")
    assert sparse.chapters == (Chapter("B", "B.\n\nText of B."),)


def test_text_markers_start_chapters() -> None:
    text = (
        "\ufeffOpening words.\r\n[Chapter: The Start]\r\nOne.\n  [chapter]  \nTwo.\n[CHAPTER:Last!]\nThree.\n"
    )
    document = read_document(text.encode(), filename="book.txt")
    assert document.title is None
    assert document.chapters == (
        Chapter("Introduction", "Opening words."),
        Chapter("The Start", "The Start.\n\nOne."),
        Chapter("Chapter 3", "Two."),
        Chapter("Last!", "Last!\n\nThree."),
    )


def test_text_without_markers_is_one_chapter() -> None:
    document = read_document(b"Just [chapter one] words.\n")
    assert document.chapters == (Chapter("Chapter 1", "Just [chapter one] words."),)


def test_kind_comes_from_the_argument_then_the_name_then_the_type() -> None:
    assert document_kind(b"# x", filename="a.MD", content_type="text/plain") == "markdown"
    assert document_kind(b"# x", filename="a.bin", content_type="text/markdown") == "markdown"
    assert document_kind(b"# x") == "text"
    assert read_document(b"# A\nx\n# B\ny", filename="a.md", kind="text").chapters[0].title == "Chapter 1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no text"),
        (b"  \n\n ", "no text"),
        (b"[chapter]\n\n[chapter: Empty]\n", "no text"),
        (b"caf\xe9", "not UTF-8"),
        ("hello".encode("utf-16"), "UTF-16"),
    ],
)
def test_unreadable_text_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        read_document(data, kind="text")


def test_limits_on_characters_and_chapters() -> None:
    text = "\n".join(f"[chapter: C{i}]\nWords." for i in range(5)).encode()
    assert len(read_document(text, max_chapters=5).chapters) == 5
    with pytest.raises(DocumentError, match="at most 4 chapters"):
        read_document(text, max_chapters=4)
    with pytest.raises(DocumentError, match="at most 10 characters"):
        read_document(b"x" * 11, max_characters=10)


def test_the_character_limit_counts_the_text_exactly() -> None:
    assert read_document(b"x" * 10, max_characters=10).characters == 10
    two = b"[chapter: A]\nxx\n[chapter: B]\nyy\n"
    document = read_document(two, kind="text")
    assert read_document(two, kind="text", max_characters=document.characters).chapters == document.chapters
    with pytest.raises(DocumentError, match="at most"):
        read_document(two, kind="text", max_characters=document.characters - 1)


def test_epub_front_matter_named_by_its_own_epub_type_is_left_out(tmp_path: Path) -> None:
    extra = [
        (
            "copyright.xhtml",
            '<section epub:type="copyright-page"><p>Copyright 2026. All rights reserved.</p></section>',
        )
    ]
    document = read_document(build_epub(tmp_path, extra=extra), kind="epub")
    assert [c.title for c in document.chapters] == ["The Harbour", "A Letter", "Home"]
    assert "Copyright" not in "".join(c.text for c in document.chapters)


def test_a_document_title_is_one_line_of_at_most_500_characters() -> None:
    document = read_document(b"---\ntitle: " + b"Long " * 200 + b"\n---\nText.\n", kind="markdown")
    assert document.title is not None and 490 < len(document.title) <= 500 and "\n" not in document.title
