"""The plain text of one XHTML page, read as it streams in: a paragraph per block element; footnote references,
page-break markers, scripts and ruby annotations not read; a heading without closing punctuation gets a period so
it is read as a sentence. It also notes what the page says it is (`epub:type` on its body and top sections), so
front matter (title page, copyright, table of contents) can be left out."""

from __future__ import annotations

from html.parser import HTMLParser

from services.jobs.documents.model import SENTENCE_CLOSE

_BLOCKS = frozenset(
    "address article aside blockquote body br dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6 header hr"
    " li main nav ol p pre section table td th tr ul".split()
)
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())  # never closed
_NOT_READ = frozenset("head script style rt rp svg math".split())
# Elements whose epub:type / role says what the whole page is (before its first paragraph).
_PAGE_KINDS_ON = frozenset("body section div header".split())
_NOT_READ_ROLES = ("noteref", "footnote", "endnote", "rearnote", "pagebreak")


class XhtmlText(HTMLParser):
    """Plain text of one XHTML page: a paragraph per block element, whitespace inside a paragraph collapsed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._paragraphs: list[str] = []
        self._words: list[str] = []
        self._skipping: list[str] = []  # tag names open inside (and including) an element that is not read
        self._heading_depth = 0
        self.first_heading: str | None = None
        self.kinds: set[str] = (
            set()
        )  # epub:type / role words on the body and the sections around the first text
        self.characters = 0  # of the paragraphs so far

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag not in _VOID:
                self._skipping.append(tag)
            return
        roles = " ".join(value or "" for name, value in attrs if name in ("epub:type", "role")).lower()
        if roles and tag in _PAGE_KINDS_ON and not self._paragraphs:
            self.kinds.update(word.removeprefix("doc-") for word in roles.split())
        if tag in _NOT_READ or any(role in roles for role in _NOT_READ_ROLES):
            if tag not in _VOID:
                self._skipping.append(tag)
            return
        if tag in _BLOCKS:
            self._end_paragraph()
        if tag in _HEADINGS:
            self._heading_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._skipping and tag in _BLOCKS:  # <br/>, <hr/>, an empty <p/>
            self._end_paragraph()

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            # Close up to the matching open tag (a tag left open inside it is closed with it).
            if tag in self._skipping:
                while self._skipping.pop() != tag:
                    pass
            return
        if tag in _HEADINGS and self._heading_depth:
            self._heading_depth -= 1
            heading = self._end_paragraph()
            if heading and self._heading_depth == 0:
                if self.first_heading is None:
                    self.first_heading = heading
                if not heading.endswith(SENTENCE_CLOSE):
                    self._paragraphs[-1] = f"{heading}."
        elif tag in _BLOCKS:
            self._end_paragraph()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._words.append(data)

    def _end_paragraph(self) -> str:
        paragraph = " ".join("".join(self._words).split())
        self._words.clear()
        if paragraph:
            self._paragraphs.append(paragraph)
            self.characters += len(paragraph) + 2
        return paragraph

    def paragraphs(self) -> list[str]:
        self._end_paragraph()
        return list(self._paragraphs)

    def text(self) -> str:
        return "\n\n".join(self.paragraphs())
