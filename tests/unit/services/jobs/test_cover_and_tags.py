"""Covers checked as pictures and tags on one line (issue 98): any bytes labelled PNG or JPEG were embedded, a
20000x20000 PNG went to players untouched, and a JSON title or author kept its line breaks in every file's tags."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

from services.jobs.cover import MAX_SIDE
from services.jobs.tags import BookTags, save_cover


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header says `width` x `height` (what a decoder would allocate), with almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_a_picture_as_it_came_is_kept(tmp_path: Path) -> None:
    data = _png(300, 400)
    path = save_cover(tmp_path, data, "image/jpeg")  # the document's label is wrong: the picture's own wins
    assert path is not None and path.name == "cover.png" and path.read_bytes() == data


def test_a_huge_picture_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    assert save_cover(tmp_path, _huge_png_header(20_000, 20_000), "image/png") is None
    assert not list(tmp_path.iterdir())


def test_a_large_picture_is_scaled_down(tmp_path: Path) -> None:
    path = save_cover(tmp_path, _png(MAX_SIDE * 2, MAX_SIDE), "image/png")
    assert path is not None
    with Image.open(path) as image:
        assert image.size == (MAX_SIDE, MAX_SIDE // 2)


def test_bytes_that_are_no_picture_are_dropped(tmp_path: Path) -> None:
    assert save_cover(tmp_path, b"<svg>not a png</svg>", "image/png") is None
    assert save_cover(tmp_path, _png(10, 10)[:40], "image/png") is None  # truncated


def test_line_breaks_in_a_title_or_author_fold_to_one_line() -> None:
    tags = BookTags("A\r\nbook\n\nabout\u2028things", "Ann\tSmith\n")
    assert (tags.title, tags.author) == ("A book about things", "Ann Smith")
    assert BookTags("\n\n", None).title is None


def test_chapter_titles_are_bounded() -> None:
    """Titles are kept in every job view: a table of contents of huge titles is cut to a title's length each."""
    from services.jobs.documents.model import MAX_TITLE_CHARS, Chapters, Limits

    chapters = Chapters(Limits(max_characters=1_000))
    for _ in range(3):
        chapters.add("t" * 100_000, "")
    assert chapters.titles == ["t" * MAX_TITLE_CHARS] * 3
