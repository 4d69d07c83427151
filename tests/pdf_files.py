"""Small PDFs written byte by byte, for the document reader's tests and bench/bench_pdf_reading.py: pages of
Helvetica text (content streams, compressed) and an outline whose top-level entries point at pages."""

from __future__ import annotations

import zlib


def minimal_pdf(streams: list[bytes], outline: list[tuple[str, int]], *, loop: bool = False) -> bytes:
    """A PDF of one page per content stream (font /F1: Helvetica) and one top-level outline entry per (title,
    page index); `loop`: the last entry's /Next is the first (an outline that never ends)."""
    count = len(streams)
    first_page, first_stream, first_entry = 5, 5 + count, 5 + 2 * count
    kids = " ".join(f"{first_page + i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Outlines 4 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Type /Outlines /First {first_entry} 0 R /Last {first_entry + len(outline) - 1} 0 R >>".encode(),
    ]
    for i in range(count):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % (first_stream + i)
        )
    for data in streams:
        packed = zlib.compress(data, 6)
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>stream\n" % len(packed) + packed + b"\nendstream"
        )
    for i, (title, page) in enumerate(outline):
        after = first_entry + i + 1 if i < len(outline) - 1 else (first_entry if loop else None)
        link = f"/Next {after} 0 R " if after else ""
        objects.append(
            f"<< /Title ({title}) /Parent 4 0 R {link}/Dest [{first_page + page} 0 R /XYZ 0 792 0] >>".encode()
        )
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


def word_flood(words: int) -> bytes:
    """A content stream of `words` one-letter words, 80 to a line, at size 1 (a few KB once compressed)."""
    line = " ".join(["a"] * 80)
    body = b" ".join(f"({line}) '".encode() for _ in range(words // 80))
    return b"BT /F1 1 Tf 1 0 0 1 10 10 Tm 1.2 TL " + body + b" ET"
