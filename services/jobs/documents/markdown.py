"""Markdown: split at headings (`# Title` or a one-line `Title` underlined with `===` / `---`; never inside fenced
code). The split level is the top-most heading level that occurs more than once; deeper headings stay in their
chapter. A lone heading above that level, before the first chapter, is the document's title. Text before the first
chapter heading becomes a chapter of its own when it is not empty (titled with the document's title, else
"Introduction"). A heading with nothing under it is no chapter. YAML front matter is dropped (its `title:` is the
document's title). Without a repeated heading level the whole text is one chapter. Chapters keep their Markdown,
read aloud later by the service's Markdown reading."""

from __future__ import annotations

import re
from dataclasses import dataclass

from processing.markdown import read_markdown
from services.jobs.documents.model import UNTITLED_OPENING, Chapters, Document, Limits, spoken

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BLOCK_START = re.compile(r"^ {0,3}(?:[-*+>|]|\d{1,9}[.)][ \t]|#)")
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class _Heading:
    level: int
    title: str
    first_line: int  # the heading's lines: [first_line, end_line)
    end_line: int


def read_markdown_document(text: str, limits: Limits) -> Document:
    text, title = _drop_front_matter(text)
    lines = text.split("\n")
    headings = _headings(lines)
    level = next((n for n in range(1, 7) if sum(h.level == n for h in headings) > 1), None)
    if level is None:
        body = text.strip()
        if title is None and headings:
            title = headings[0].title
        single = Chapters(limits)
        if body:
            single.add(title or "Chapter 1", body)
        return Document(title, single.chapters())

    splits = [h for h in headings if h.level == level]
    opening = lines[: splits[0].first_line]
    above = [h for h in headings if h.level < level and h.end_line <= splits[0].first_line]
    chapters = Chapters(limits)
    if above:
        title = title or above[0].title
        opening = opening[: above[0].first_line] + opening[above[0].end_line :]
        body = "\n".join(opening).strip()
        if body:
            chapters.add(above[0].title, spoken(above[0].title, body))
    elif body := "\n".join(opening).strip():
        chapters.add(title or UNTITLED_OPENING, body)
    for i, heading in enumerate(splits):
        end = splits[i + 1].first_line if i + 1 < len(splits) else len(lines)
        body = "\n".join(lines[heading.end_line : end]).strip()
        if body:
            chapters.add(heading.title, spoken(heading.title, body))
    return Document(title, chapters.chapters())


def _drop_front_matter(text: str) -> tuple[str, str | None]:
    """YAML front matter (`---` lines around it, at the very start) removed; its `title:` if it has one."""
    if not text.startswith("---\n"):
        return text, None
    end = re.search(r"^(?:---|\.\.\.)[ \t]*$", text[4:], re.MULTILINE)
    if end is None:
        return text, None
    matter = text[4 : 4 + end.start()]
    found = _FRONT_MATTER_TITLE.search(matter)
    title = found.group(1).strip("\"'").strip() if found else None
    return text[4 + end.end() :], title or None


def _headings(lines: list[str]) -> list[_Heading]:
    headings: list[_Heading] = []
    fence: str | None = None
    for i, line in enumerate(lines):
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        atx = _ATX.match(line)
        if atx and (title := _plain(atx.group(2))):
            headings.append(_Heading(len(atx.group(1)), title, i, i + 1))
            continue
        # A setext heading: one line of paragraph text (a blank line or the start above it), then its underline.
        underline = _SETEXT.match(line)
        if (
            underline
            and i > 0
            and lines[i - 1].strip()
            and not _BLOCK_START.match(lines[i - 1])
            and (i == 1 or not lines[i - 2].strip())
            and not (headings and headings[-1].end_line == i)
            and (title := _plain(lines[i - 1]))
        ):
            headings.append(_Heading(1 if underline.group(1)[0] == "=" else 2, title, i - 1, i + 1))
    return headings


def _plain(markdown: str) -> str:
    """A heading's text without its inline Markdown (emphasis, links, code)."""
    return " ".join(read_markdown(markdown.strip()).split())
