"""MkDocs hook: a Markdown list written straight after a paragraph line (no blank line before it) renders as one
run-on paragraph, and nothing else notices. This hook reads each page as MkDocs rendered it (the same Markdown
library and extensions) and logs a warning for every <p> holding a line that starts like a list item, so
`mkdocs build --strict` fails on it. Wired in mkdocs.yml (`hooks:`)."""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from typing import Any

log = logging.getLogger("mkdocs.hooks.docs_lists")

# "- item", "* item", "+ item", "1. item" (or "1) item"): how a list item starts.
_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+\S")


class _Paragraphs(HTMLParser):
    """Collects the text of every top-level <p> (tags inside it dropped, their text kept)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._depth = 0
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p":
            self._depth += 1
            if self._depth == 1:
                self._parts = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self._depth:
            self._depth -= 1
            if self._depth == 0:
                self.texts.append("".join(self._parts))

    def handle_data(self, data: str) -> None:
        if self._depth:
            self._parts.append(data)


def run_on_lists(html: str) -> list[str]:
    """The lines that start like a list item but sit inside a paragraph: a list that rendered as running text."""
    parser = _Paragraphs()
    parser.feed(html)
    parser.close()
    found = []
    for text in parser.texts:
        found += [line.strip() for line in text.splitlines()[1:] if _ITEM.match(line)]
    return found


def on_page_content(html: str, page: Any, **_: Any) -> str:
    for line in run_on_lists(html):
        log.warning(
            "%s: a list renders as a paragraph (add a blank line before it): %r",
            page.file.src_path,
            line[:80],
        )
    return html
