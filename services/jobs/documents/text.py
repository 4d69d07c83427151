"""Plain text: a line that is exactly `[chapter]` or `[chapter: Title]` (any case, spaces around allowed) starts a
chapter; text before the first marker is a chapter when not empty ("Introduction"); without markers the whole
text is one chapter. `[chapter]` alone is titled "Chapter N". Markers are read one at a time, the limits checked at
each (and at most twice as many markers as chapters), so a flood of markers stops early, not after a list of them."""

from __future__ import annotations

import re

from services.jobs.documents.model import UNTITLED_OPENING, Chapters, Document, DocumentError, Limits, spoken

_MARKER = re.compile(
    r"^[ \t]*\[chapter(?:[ \t]*:[ \t]*([^\]\n]*?))?[ \t]*\][ \t]*$", re.IGNORECASE | re.MULTILINE
)


def read_text(text: str, limits: Limits) -> Document:
    chapters = Chapters(limits)
    start = 0
    title: str | None = (
        None  # the marker's title that opened the current chapter ("" untitled, None: none yet)
    )
    for count, marker in enumerate(_MARKER.finditer(text), 1):
        if count > 2 * limits.max_chapters:  # empty chapters are dropped, but each marker still costs a step
            raise DocumentError(
                f"the document has more than {2 * limits.max_chapters} [chapter] markers; "
                f"a job takes at most {limits.max_chapters} chapters"
            )
        _close(chapters, title, text[start : marker.start()].strip(), UNTITLED_OPENING)
        title = (marker.group(1) or "").strip()
        start = marker.end()
    _close(chapters, title, text[start:].strip(), "Chapter 1")
    return Document(None, chapters.chapters())


def _close(chapters: Chapters, title: str | None, body: str, opening: str) -> None:
    """End a chapter; `opening` titles text before any marker ("Introduction" before one, "Chapter 1" without)."""
    if not body:
        return
    if title is None:
        chapters.add(opening, body)
    elif title:
        chapters.add(title, spoken(title, body))
    else:
        chapters.add(f"Chapter {len(chapters) + 1}", body)
