"""A PDF's reading is linear in its text, whatever its outline asks for: the hostile round's small PDF whose
outline titles are looked for in a page of hundreds of thousands of words (a regular-expression search per title
held a reader its whole 60 s) reads in its reader process well inside the timeout; an outline past the chapter
limit, or one that loops, stops at once."""

from __future__ import annotations

import asyncio

import pytest

from services.jobs.documents import DocumentError, read_document
from services.jobs.documents.isolated import read_document_isolated
from tests.pdf_files import minimal_pdf, word_flood


def pdf(words: int, titles: list[str], *, loop: bool = False) -> bytes:
    """One page of `words` one-letter words and an outline whose top-level entries, titled `titles`, all point at
    it (`loop`: the last one's /Next is the first)."""
    return minimal_pdf([word_flood(words)], [(title, 0) for title in titles], loop=loop)


def test_outline_titles_looked_for_in_a_huge_page_do_not_hold_the_reader() -> None:
    # 200,000 words on one page; 20 titles of 1,000 words that match every position but the last word.
    data = pdf(200_000, [" ".join(["a"] * 1_000) + " b"] * 20)
    assert len(data) < 50_000
    document = asyncio.run(read_document_isolated(data, timeout_s=45, memory_mb=512, filename="attack.pdf"))
    assert document.characters > 350_000  # the page is read (at the top of the last entry's chapter)


def test_the_reader_runs_below_the_servers_cpu_priority() -> None:
    """A hostile document's read takes the CPU the serving process leaves: its child runs `READER_NICENESS` steps
    below this process, seen while it reads the slow outline above."""
    import psutil

    from services.jobs.documents.isolated import READER_NICENESS

    data = pdf(200_000, [" ".join(["a"] * 1_000) + " b"] * 20)
    seen: list[int] = []

    async def read_and_look() -> None:
        reading = asyncio.create_task(
            read_document_isolated(data, timeout_s=45, memory_mb=512, filename="attack.pdf")
        )
        while not reading.done():
            for child in psutil.Process().children():
                try:
                    if "services.jobs.documents.isolated" in " ".join(child.cmdline()):
                        seen.append(child.nice())
                except psutil.Error:  # it ended between the listing and the look
                    continue
            await asyncio.sleep(0.05)
        await reading

    asyncio.run(read_and_look())
    assert seen and max(seen) == psutil.Process().nice() + READER_NICENESS


def test_a_long_outline_title_is_read_and_cut_not_nuls() -> None:
    # PDFium leaves a buffer shorter than the title untouched: a title read into one came back as NULs, and the
    # whole upload was refused for a control character.
    document = read_document(pdf(800, ["One", "x" * 2_000]), filename="long-title.pdf")
    assert [c.title for c in document.chapters][-1] == "x" * 300
    assert all("\x00" not in c.title for c in document.chapters)


def test_an_outline_past_the_chapter_limit_is_refused() -> None:
    with pytest.raises(DocumentError, match="at most 10 chapters"):
        read_document(pdf(800, [f"Part {n}" for n in range(200)]), filename="parts.pdf", max_chapters=10)


def test_an_outline_that_loops_is_read_once() -> None:
    document = read_document(pdf(800, ["One", "Two"], loop=True), filename="loop.pdf")
    assert [c.title for c in document.chapters] == ["Two"]  # both start at the page's top; the first is empty
