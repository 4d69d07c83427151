"""Document reading is bounded before it starts: ZIP bombs refused from the central directory before an
entry is read (bzip2 or deflate ratios, an oversized encryption.xml or `mimetype`), each entry read once (a page
listed many times in the manifest and spine), pages parsed as they unpack with the limits applied as they go,
`[chapter]` floods stopped at the chapter limit; the reader's process bounds memory and time, and the server's
memory stays where it was."""

from __future__ import annotations

import asyncio
import io
import random
import time
import zipfile
from pathlib import Path
from typing import Any

import psutil
import pytest

from services.jobs.documents import Document, DocumentError, read_document
from services.jobs.documents.archive import Archive
from services.jobs.documents.isolated import read_document_isolated as read_async


def read_document_isolated(data: bytes, **options: Any) -> Document:
    return asyncio.run(read_async(data, **options))


BOOKS = Path(__file__).resolve().parents[4] / "books"
CONTAINER = (
    '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
    '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>'
)


def epub(page: bytes, *, listed: int = 1, extra: dict[str, tuple[bytes, int]] | None = None) -> bytes:
    """A minimal EPUB 2 whose one page is in the manifest and the spine `listed` times; `extra` entries
    (name: (data, compression)) are added as they are."""
    items = "".join(
        f'<item id="p{i}" href="page.xhtml" media-type="application/xhtml+xml"/>' for i in range(listed)
    )
    spine = "".join(f'<itemref idref="p{i}"/>' for i in range(listed))
    opf = (
        '<package xmlns="http://www.idpf.org/2007/opf" version="2.0"><metadata '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Bounded</dc:title></metadata>'
        f"<manifest>{items}</manifest><spine>{spine}</spine></package>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", CONTAINER)
        archive.writestr("OEBPS/content.opf", opf)
        archive.writestr("OEBPS/page.xhtml", page)
        for name, (data, method) in (extra or {}).items():
            archive.writestr(name, data, method)
    return out.getvalue()


def paragraphs(count: int) -> bytes:
    return b"<html><body>" + b"<p>word</p>" * count + b"</body></html>"


def test_a_bzip2_mimetype_bomb_is_refused_before_it_is_unpacked() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", b"application/epub+zip" + b"\0" * 64_000_000, zipfile.ZIP_BZIP2)
    data = out.getvalue()
    assert len(data) < 5_000
    started = time.perf_counter()
    with pytest.raises(DocumentError, match="compressed with a method"):
        read_document(data)  # sniffed: the kind comes from the bytes
    assert time.perf_counter() - started < 1.0


def test_a_deflate_bomb_in_encryption_xml_or_a_page_is_refused_by_its_ratio() -> None:
    spaces = b" " * 40_000_000  # deflates about 1000 times
    bomb = epub(
        paragraphs(10), extra={"META-INF/encryption.xml": (b"<encryption>" + spaces, zipfile.ZIP_DEFLATED)}
    )
    assert len(bomb) < 100_000
    with pytest.raises(DocumentError, match="compressed .* times"):
        read_document(bomb, filename="bomb.epub")
    with pytest.raises(DocumentError, match="compressed .* times"):
        read_document(epub(paragraphs(4_000_000)), filename="bomb.epub")  # 44 MB of <p>word</p>


def test_an_oversized_entry_is_refused_whatever_its_ratio() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("big.bin", b"\0" * (65 * 1024 * 1024), zipfile.ZIP_STORED)
    with pytest.raises(DocumentError, match="too large once unpacked"):
        Archive(out.getvalue(), "EPUB")


def test_a_page_listed_many_times_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    original = Archive.stream

    def counted(self: Archive, name: str, cap: int = 1 << 30):  # type: ignore[no-untyped-def]
        reads.append(name)
        return original(self, name, cap)

    monkeypatch.setattr(Archive, "stream", counted)
    document = read_document(epub(paragraphs(50_000), listed=20), filename="book.epub")
    assert len(document.chapters) == 1 and document.characters == len("word\n\n") * 50_000 - 2
    assert reads.count("OEBPS/page.xhtml") == 1


def test_parsing_stops_at_the_character_limit_instead_of_reading_the_page_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks: list[int] = []
    original = Archive.stream

    def counted(self: Archive, name: str, cap: int = 1 << 30):  # type: ignore[no-untyped-def]
        for block in original(self, name, cap):
            blocks.append(len(block))
            yield block

    monkeypatch.setattr(Archive, "stream", counted)
    page = paragraphs(90_000)  # 990 KB: under the ratio floor, so it unpacks
    with pytest.raises(DocumentError, match="at most 1,000 characters"):
        read_document(epub(page), filename="book.epub", max_characters=1_000)
    assert sum(blocks) < len(page) // 4  # it stopped in the first blocks of the page


@pytest.mark.parametrize("kind", ["text", "markdown"])
def test_a_flood_of_chapters_stops_at_the_chapter_limit(kind: str) -> None:
    marker = b"[chapter]\nx\n" if kind == "text" else b"# T\nx\n"
    with pytest.raises(DocumentError, match="at most 500 chapters"):
        read_document(marker * 600, kind=kind)  # type: ignore[arg-type]


def test_a_pdf_is_never_read_as_text() -> None:
    data = (BOOKS / "license.pdf").read_bytes()
    with pytest.raises(DocumentError, match="the file is a PDF"):
        read_document(data, kind="text")


def test_an_encrypted_pdf_is_refused() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(BOOKS / "license.pdf"))
    writer.encrypt("secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(DocumentError, match="encrypted"):
        read_document(out.getvalue(), filename="locked.pdf")


def test_the_reader_process_reads_a_real_book_and_refuses_a_bomb_with_the_same_message() -> None:
    book = read_document_isolated(
        (BOOKS / "nested.epub").read_bytes(), timeout_s=60, memory_mb=512, filename="nested.epub"
    )
    assert [c.title for c in book.chapters][0] == "Definitions and Basic Permissions"
    assert book.author == "Ada Writer" and book.cover is not None
    with pytest.raises(DocumentError, match="compressed .* times"):
        read_document_isolated(epub(paragraphs(4_000_000)), timeout_s=60, memory_mb=512, filename="b.epub")


def test_the_reader_process_bounds_memory_and_time_and_the_server_keeps_its_own() -> None:
    server = psutil.Process()
    before = server.memory_info().rss
    flood = b"x " * 40_000_000  # 80 MB of text: more than 96 MB of address space can read
    with pytest.raises(DocumentError, match="more memory"):
        read_document_isolated(flood, timeout_s=60, memory_mb=96, kind="text")
    with pytest.raises(DocumentError, match="took longer than"):
        read_document_isolated(b"words", timeout_s=0.01, memory_mb=512, kind="text")
    del flood
    assert server.memory_info().rss - before < 256 * 1024 * 1024


def test_a_flood_of_empty_chapter_markers_stops_early() -> None:
    started = time.perf_counter()
    with pytest.raises(DocumentError, match="more than 1000 \\[chapter\\] markers"):
        read_document(b"[chapter]\n" * 4_800_000, kind="text", max_characters=48_000_000)  # 48 MB
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize("kind", ["text", "markdown"])
def test_a_text_far_over_the_character_limit_is_refused_before_it_is_split(kind: str) -> None:
    started = time.perf_counter()
    with pytest.raises(DocumentError, match="at most 2,000,000 characters"):
        read_document(b"# \n" * 16_000_000, kind=kind)  # type: ignore[arg-type]  # 48 MB of empty headings
    assert time.perf_counter() - started < 5.0


def test_readers_run_without_holding_the_event_loop_and_take_turns() -> None:
    async def main() -> tuple[list[Document], int]:
        ticks = 0

        async def clock() -> None:  # the loop keeps running while the children read
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(clock())
        started = time.perf_counter()
        books = await asyncio.gather(
            *(read_async(b"[chapter: A]\nOne.\n", timeout_s=60, memory_mb=256, kind="text") for _ in range(4))
        )
        elapsed = time.perf_counter() - started
        ticking.cancel()
        return list(books), ticks, elapsed

    books, ticks, elapsed = asyncio.run(main())
    assert [b.chapters[0].title for b in books] == ["A"] * 4
    # A loop held by the readers would tick about once; a free one ticks every 10 ms they take. Read against the
    # time they took (children start faster on some machines), with room for a loaded one.
    assert ticks >= max(3, int(elapsed / 0.01 / 2)), (ticks, elapsed)


def test_an_unclosed_comment_is_refused_instead_of_rescanned_at_every_block() -> None:
    rng = random.Random(7)
    filler = "".join(rng.choice("abcdefghij ") for _ in range(3_000_000)).encode()  # compresses ~2x
    started = time.perf_counter()
    with pytest.raises(DocumentError, match="unclosed comment"):
        read_document(epub(b"<html><body><p>Hi.</p><!-- " + filler), filename="book.epub")
    assert time.perf_counter() - started < 5.0
