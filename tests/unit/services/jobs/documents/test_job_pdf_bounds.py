"""A PDF's reading is linear in its text, whatever its outline asks for: the hostile round's small PDF whose
outline titles are looked for in a page of hundreds of thousands of words (a regular-expression search per title
held a reader its whole 60 s) reads in its reader process well inside the timeout; an outline past the chapter
limit, or one that loops, stops at once."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from services.jobs.documents import DocumentError, read_document
from services.jobs.documents.isolated import read_document_isolated


def pdf(words: int, titles: list[str], *, loop: bool = False) -> bytes:
    """One page of `words` one-letter words on lines of 80, written with a compressed content stream (a few KB),
    and an outline whose top-level entries, titled `titles`, all point at it (`loop`: the last one's /Next is
    the first)."""
    line = " ".join(["a"] * 80)
    content = b"BT /F1 1 Tf 1 0 0 1 10 10 Tm 1.2 TL " + b" ".join(
        f"({line}) '".encode() for _ in range(words // 80)
    )
    stream = zlib.compress(content + b" ET", 9)
    first = 7
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Outlines 5 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 6 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Type /Outlines /First {first} 0 R /Last {first + len(titles) - 1} 0 R >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>stream\n" % len(stream) + stream + b"\nendstream",
    ]
    for i, title in enumerate(titles):
        after = first + i + 1 if i < len(titles) - 1 else (first if loop else None)
        link = f"/Next {after} 0 R " if after else ""
        objects.append(f"<< /Title ({title}) /Parent 5 0 R {link}/Dest [3 0 R /XYZ 0 792 0] >>".encode())
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_outline_titles_looked_for_in_a_huge_page_do_not_hold_the_reader() -> None:
    # 200,000 words on one page; 20 titles of 1,000 words that match every position but the last word.
    data = pdf(200_000, [" ".join(["a"] * 1_000) + " b"] * 20)
    assert len(data) < 50_000
    document = asyncio.run(read_document_isolated(data, timeout_s=45, memory_mb=512, filename="attack.pdf"))
    assert document.characters > 350_000  # the page is read (at the top of the last entry's chapter)


def test_an_outline_past_the_chapter_limit_is_refused() -> None:
    with pytest.raises(DocumentError, match="at most 10 chapters"):
        read_document(pdf(800, [f"Part {n}" for n in range(200)]), filename="parts.pdf", max_chapters=10)


def test_an_outline_that_loops_is_read_once() -> None:
    document = read_document(pdf(800, ["One", "Two"], loop=True), filename="loop.pdf")
    assert [c.title for c in document.chapters] == ["Two"]  # both start at the page's top; the first is empty
