"""PDF reading for jobs: the reader (PDFium by character position, services/jobs/documents/pdf.py) against plain text
extraction by pypdf (the reader before it) and pdfminer.six's layout analysis (when installed), on books of growing
size, and on the hostile round's PDF whose outline titles are looked for in one huge page.

Books are written here with one Helvetica line per PDF line (no tool needed): 40 lines of 12 words a page, a
chapter heading at 14 pt every ten pages, an outline entry per chapter. "chars/s" is the book's characters over the
reader's whole time (the reader's figure includes its layout, headings and chapters; the others extract text only).
The reader must stay linear: chars/s flat as the book grows, and the attack read in seconds, not the previous
reader's minutes.

    .venv/bin/python bench/bench_pdf_reading.py [--pages 20,100,300] [--attack-words 200000]

Prints a markdown table and writes bench/results/pdf_reading.json.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.jobs.documents import read_document  # noqa: E402
from tests.pdf_files import minimal_pdf, word_flood  # noqa: E402

WORDS = "the quick brown fox jumps over lazy dog while another river runs through valley under morning light".split()


def book(pages: int, seed: int = 1) -> bytes:
    """A PDF of `pages` pages (see the module docstring)."""
    rng = random.Random(seed)
    streams: list[bytes] = []
    chapters: list[tuple[str, int]] = []
    for page in range(pages):
        lines = []
        y = 760
        if page % 10 == 0:
            title = f"Chapter {page // 10 + 1}"
            chapters.append((title, page))
            lines.append(f"BT /F1 14 Tf 72 {y} Td ({title}) Tj ET")
            y -= 30
        while y > 60:
            text = " ".join(rng.choice(WORDS) for _ in range(12)) + "."
            lines.append(f"BT /F1 10 Tf 72 {y} Td ({text}) Tj ET")
            y -= 17
        streams.append("\n".join(lines).encode())
    return minimal_pdf(streams, chapters)


def attack(words: int, titles: int = 20, title_words: int = 1000) -> bytes:
    """One page of `words` one-letter words, and `titles` outline entries pointing at it whose titles match it
    everywhere but their last word."""
    title = " ".join(["a"] * title_words) + " b"
    return minimal_pdf([word_flood(words)], [(title, 0)] * titles)


def reader(data: bytes) -> int:
    return read_document(data, filename="book.pdf").characters


def with_pypdf(data: bytes) -> int:
    from pypdf import PdfReader

    return sum(len(page.extract_text() or "") for page in PdfReader(io.BytesIO(data)).pages)


def with_pdfminer(data: bytes) -> int:
    from pdfminer.high_level import extract_text  # type: ignore[import-not-found]  # optional: not in the venv

    return len(extract_text(io.BytesIO(data)))


def timed(read: Callable[[bytes], int], data: bytes, limit_s: float) -> str:
    """Seconds and characters per second, or why there is no figure."""
    try:
        started = time.perf_counter()
        characters = read(data)
        elapsed = time.perf_counter() - started
    except ImportError:
        return "not installed"
    if elapsed > limit_s:
        return f"{elapsed:.1f} s (over {limit_s:g} s)"
    return f"{elapsed:.2f} s, {characters / elapsed:,.0f} chars/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", default="20,100,300")
    parser.add_argument("--attack-words", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20 and 60 pages, a 50,000-word attack")
    args = parser.parse_args()
    pages = [20, 60] if args.quick else [int(p) for p in args.pages.split(",")]
    rows: list[dict[str, str]] = []
    print("| PDF | size | reader (PDFium layout) | pypdf text | pdfminer.six layout |")
    print("|---|---|---|---|---|")
    for count in pages:
        data = book(count)
        row = {
            "pdf": f"{count} pages",
            "size": f"{len(data) // 1024} KB",
            "reader": timed(reader, data, 120),
            "pypdf": timed(with_pypdf, data, 120),
            "pdfminer": timed(with_pdfminer, data, 120),
        }
        rows.append(row)
        print(f"| {' | '.join(row.values())} |", flush=True)
    words = 50_000 if args.quick else args.attack_words
    data = attack(words)
    row = {
        "pdf": f"attack: {words:,} words, 20 outline titles",
        "size": f"{len(data) // 1024} KB",
        "reader": timed(reader, data, 60),
        "pypdf": "(text only: not the outline search)",
        "pdfminer": "",
    }
    rows.append(row)
    print(f"| {' | '.join(row.values())} |")
    out = ROOT / "bench" / "results" / "pdf_reading.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
