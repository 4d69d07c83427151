"""A job's document read into chapters: `read_document(data, filename=..., content_type=...)`.

The kind is the `kind` argument, else the file name's extension (`.epub`; `.md`, `.markdown`; `.txt`), else the
content type (`application/epub+zip`; `text/markdown`; `text/plain`), else sniffed: a ZIP archive whose `mimetype`
entry is `application/epub+zip` is an EPUB, anything else is plain text.

- EPUB (2 and 3, read with ebooklib): one chapter per document in the spine's reading order (non-linear items
  skipped). The title is the table of contents' entry for that document, else its first heading, else
  "Chapter N". A document with neither a table of contents entry nor a heading continues the chapter before it
  (books split long chapters into several files). The navigation document, the cover and the guide's table of
  contents page are skipped, and so are documents without text. XHTML becomes plain text with one paragraph per
  block element; footnote references, page-break markers and ruby annotations are not read, and a heading
  without closing punctuation gets a period so it is read as a sentence. The book's own heading is spoken, so
  nothing is added to the text. An encrypted (DRM) or unreadable EPUB is refused.
- Markdown: split at headings (`# Title` or a one-line `Title` underlined with `===` / `---`; never inside
  fenced code). The split level is the top-most heading level that occurs more than once; deeper headings stay
  in their chapter. A lone heading above that level, before the first chapter, is the document's title. Text
  before the first chapter heading becomes a chapter of its own when it is not empty (titled with the
  document's title, else "Introduction"). A heading with nothing under it is no chapter. YAML front matter is
  dropped (its `title:` is the document's title). Without a repeated heading level the whole text is one chapter.
- Plain text: a line that is exactly `[chapter]` or `[chapter: Title]` (any case, spaces around allowed) starts
  a chapter; text before the first marker is a chapter when not empty ("Introduction"); without markers the
  whole text is one chapter. `[chapter]` alone is titled "Chapter N".

The title is spoken: a chapter that starts at a heading or a titled marker begins with the title as its own line
(a period added when it has no closing punctuation), then a blank line, then the body. Titles the reader made up
("Chapter N", "Introduction") are not spoken. Markdown chapters keep their Markdown, read aloud later by the
service's Markdown reading; EPUB chapters are plain text.

Text must be UTF-8 (a byte order mark is allowed). Everything a user can get wrong (an empty document, another
encoding, a broken or encrypted EPUB, too many characters or chapters) raises `DocumentError`, whose message is
meant for the user (the API answers 400 with it).
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import unquote
from xml.etree import ElementTree

import ebooklib
from ebooklib import epub

from processing.markdown import read_markdown

DocumentKind = Literal["text", "markdown", "epub"]
KINDS: tuple[DocumentKind, ...] = ("text", "markdown", "epub")
_EXTENSIONS: dict[str, DocumentKind] = {
    ".epub": "epub",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".txt": "text",
    ".text": "text",
}
_CONTENT_TYPES: dict[str, DocumentKind] = {
    "application/epub+zip": "epub",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
}
_ZIP_MAGIC = b"PK\x03\x04"
_EPUB_MIMETYPE = b"application/epub+zip"
# What an EPUB may unpack to: ebooklib holds every entry in memory, so a ZIP bomb is refused before it reads.
_MAX_EPUB_UNPACKED_BYTES = 512 * 1024 * 1024
# Font obfuscation (IDPF, Adobe) lists fonts in encryption.xml; only encrypted content is DRM.
_FONT_EXTENSIONS = (".ttf", ".otf", ".woff", ".woff2")
_SENTENCE_CLOSE = tuple(".!?:;,।॥。！？；：…\"'”’)")
_UNTITLED_OPENING = "Introduction"


class DocumentError(ValueError):
    """A document that cannot be read; the message is shown to the user as it is."""


@dataclass(frozen=True)
class Chapter:
    title: str
    text: str  # what is read aloud, the spoken title included (see the module docstring)


@dataclass(frozen=True)
class Document:
    title: str | None
    chapters: tuple[Chapter, ...]

    @property
    def characters(self) -> int:
        return sum(len(chapter.text) for chapter in self.chapters)


def read_document(
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    kind: DocumentKind | None = None,
    max_characters: int = 2_000_000,
    max_chapters: int = 500,
) -> Document:
    """`data` read into chapters (see the module docstring); DocumentError says what is wrong with it."""
    kind = kind or document_kind(data, filename=filename, content_type=content_type)
    if kind == "epub":
        document = _read_epub(data)
    elif kind == "markdown":
        document = _read_markdown(_decode(data))
    elif kind == "text":
        document = _read_text(_decode(data))
    else:
        raise DocumentError(f"unknown document kind {kind!r}; accepted: {', '.join(KINDS)}")
    if not document.chapters:
        raise DocumentError("the document has no text to read")
    if len(document.chapters) > max_chapters:
        raise DocumentError(
            f"the document has {len(document.chapters)} chapters; a job takes at most {max_chapters} chapters"
        )
    if document.characters > max_characters:
        raise DocumentError(
            f"the document has {document.characters:,} characters; a job takes at most {max_characters:,} characters"
        )
    return document


def document_kind(
    data: bytes, *, filename: str | None = None, content_type: str | None = None
) -> DocumentKind:
    """The kind named by the file name, else by the content type, else sniffed from the bytes."""
    if filename:
        found = _EXTENSIONS.get(posixpath.splitext(filename.lower())[1])
        if found:
            return found
    if content_type:
        found = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
        if found:
            return found
    if data.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                mimetype = archive.read("mimetype").strip()
        except (zipfile.BadZipFile, KeyError, OSError):
            mimetype = b""
        if mimetype != _EPUB_MIMETYPE:
            raise DocumentError("the file is a ZIP archive but not an EPUB book")
        return "epub"
    return "text"


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError("the document is UTF-16 text; send it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DocumentError(
            f"the document is not UTF-8 text (invalid byte at offset {error.start})"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _spoken(title: str, body: str) -> str:
    """A chapter's text: its title as a sentence of its own, a blank line, the body."""
    line = title if title.endswith(_SENTENCE_CLOSE) else f"{title}."
    return f"{line}\n\n{body}" if body else line


# --- plain text -----------------------------------------------------------------------------------------------

_MARKER = re.compile(
    r"^[ \t]*\[chapter(?:[ \t]*:[ \t]*([^\]\n]*?))?[ \t]*\][ \t]*$", re.IGNORECASE | re.MULTILINE
)


def _read_text(text: str) -> Document:
    markers = list(_MARKER.finditer(text))
    if not markers:
        body = text.strip()
        return Document(None, (Chapter("Chapter 1", body),) if body else ())
    chapters: list[Chapter] = []
    opening = text[: markers[0].start()].strip()
    if opening:
        chapters.append(Chapter(_UNTITLED_OPENING, opening))
    for i, marker in enumerate(markers):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        body = text[marker.end() : end].strip()
        if not body:
            continue
        title = (marker.group(1) or "").strip()
        if title:
            chapters.append(Chapter(title, _spoken(title, body)))
        else:
            chapters.append(Chapter(f"Chapter {len(chapters) + 1}", body))
    return Document(None, tuple(chapters))


# --- Markdown -------------------------------------------------------------------------------------------------

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


def _read_markdown(text: str) -> Document:
    text, title = _drop_front_matter(text)
    lines = text.split("\n")
    headings = _headings(lines)
    level = next((n for n in range(1, 7) if sum(h.level == n for h in headings) > 1), None)
    if level is None:
        body = text.strip()
        if title is None and headings:
            title = headings[0].title
        return Document(title, (Chapter(title or "Chapter 1", body),) if body else ())

    splits = [h for h in headings if h.level == level]
    opening = lines[: splits[0].first_line]
    above = [h for h in headings if h.level < level and h.end_line <= splits[0].first_line]
    chapters: list[Chapter] = []
    if above:
        title = title or above[0].title
        opening = opening[: above[0].first_line] + opening[above[0].end_line :]
        body = "\n".join(opening).strip()
        if body:
            chapters.append(Chapter(above[0].title, _spoken(above[0].title, body)))
    elif body := "\n".join(opening).strip():
        chapters.append(Chapter(title or _UNTITLED_OPENING, body))
    for i, heading in enumerate(splits):
        end = splits[i + 1].first_line if i + 1 < len(splits) else len(lines)
        body = "\n".join(lines[heading.end_line : end]).strip()
        if body:
            chapters.append(Chapter(heading.title, _spoken(heading.title, body)))
    return Document(title, tuple(chapters))


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


# --- EPUB -----------------------------------------------------------------------------------------------------


def _read_epub(data: bytes) -> Document:
    _check_archive(data)
    try:
        book = epub.read_epub(io.BytesIO(data), {"ignore_ncx": True})
    except Exception as error:  # ebooklib raises its own, KeyError, lxml and zipfile errors alike
        raise DocumentError(f"the EPUB cannot be read ({_reason(error)})") from None

    toc_titles: dict[str, str] = {}
    for href, title in _toc_entries(book.toc):
        toc_titles.setdefault(_href_key(href), title)
    skipped = {_href_key(ref.get("href") or "") for ref in book.guide if ref.get("type") in ("cover", "toc")}

    titles: list[str] = []
    bodies: list[list[str]] = []
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if (
            item is None
            or linear == "no"
            or item.get_type() != ebooklib.ITEM_DOCUMENT
            or isinstance(item, epub.EpubNav | epub.EpubCoverHtml)
            or _href_key(item.get_name()) in skipped
        ):
            continue
        page = _XhtmlText()
        try:
            page.feed(_decode_xhtml(item.get_content()))
            page.close()
        except Exception as error:  # a malformed page: the book is not readable as it stands
            raise DocumentError(
                f"the EPUB page {item.get_name()!r} cannot be read ({_reason(error)})"
            ) from None
        text = page.text()
        if not text:
            continue
        heading = toc_titles.get(_href_key(item.get_name())) or page.first_heading
        if heading is None and toc_titles and bodies:
            bodies[-1].append(text)  # the rest of the chapter before, in a file of its own
            continue
        titles.append(heading or f"Chapter {len(titles) + 1}")
        bodies.append([text])
    metadata_title = book.get_metadata("DC", "title")
    book_title = " ".join(str(metadata_title[0][0]).split()) if metadata_title else ""
    chapters = tuple(Chapter(title, "\n\n".join(body)) for title, body in zip(titles, bodies, strict=True))
    return Document(book_title or None, chapters)


def _check_archive(data: bytes) -> None:
    """Refuse what ebooklib should not unpack: not a ZIP, too large unpacked, or DRM-encrypted content."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            names = {entry.filename for entry in entries}
            encryption = (
                archive.read("META-INF/encryption.xml") if "META-INF/encryption.xml" in names else None
            )
    except (zipfile.BadZipFile, OSError, EOFError):
        raise DocumentError("the file is not an EPUB book (not a ZIP archive)") from None
    if sum(entry.file_size for entry in entries) > _MAX_EPUB_UNPACKED_BYTES:
        raise DocumentError("the EPUB is too large once unpacked")
    if "META-INF/rights.xml" in names or (encryption is not None and _encrypts_content(encryption)):
        raise DocumentError("the EPUB is encrypted (DRM); only DRM-free books can be read")


def _encrypts_content(encryption_xml: bytes) -> bool:
    try:
        root = ElementTree.fromstring(encryption_xml)
    except ElementTree.ParseError:
        return True  # an encryption manifest that cannot be read: assume the worst
    uris = [el.get("URI", "") for el in root.iter() if el.tag.endswith("CipherReference")]
    return any(not unquote(uri).lower().endswith(_FONT_EXTENSIONS) for uri in uris)


def _toc_entries(toc: Iterable[Any]) -> Iterable[tuple[str, str]]:
    """(href, title) of every table of contents entry (ebooklib's Link / Section trees), a section's entries
    before the section's own: a part that opens in its first chapter's file yields to the chapter's title."""
    for entry in toc:
        if isinstance(entry, tuple):
            section, children = entry
            yield from _toc_entries(children)
            yield from _entry(section)
        else:
            yield from _entry(entry)


def _entry(node: Any) -> Iterable[tuple[str, str]]:
    href = getattr(node, "href", None) or getattr(node, "file_name", None)
    title = " ".join(str(getattr(node, "title", "") or "").split())
    if href and title:
        yield str(href), title


def _href_key(href: str) -> str:
    """A document's name as the spine, the table of contents and the guide all spell it: no fragment, no
    directory (hrefs are relative to different files), unquoted, case-folded."""
    return posixpath.basename(unquote(href.split("#", 1)[0])).lower()


def _decode_xhtml(content: bytes) -> str:
    declared = re.match(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']", content)
    encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        return content.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return content.decode("utf-8", errors="replace")


def _reason(error: Exception) -> str:
    message = str(error).strip().strip("'\"")
    return message[:200] if message else type(error).__name__


_BLOCKS = frozenset(
    "address article aside blockquote body br dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6 header hr"
    " li main nav ol p pre section table td th tr ul".split()
)
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())  # never closed
_NOT_READ = frozenset("head script style rt rp svg math".split())
_NOT_READ_ROLES = ("noteref", "footnote", "endnote", "rearnote", "pagebreak")


class _XhtmlText(HTMLParser):
    """Plain text of one XHTML page: a paragraph per block element, whitespace inside a paragraph collapsed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._paragraphs: list[str] = []
        self._words: list[str] = []
        self._skipping: list[str] = []  # tag names open inside (and including) an element that is not read
        self._heading_depth = 0
        self.first_heading: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag not in _VOID:
                self._skipping.append(tag)
            return
        roles = " ".join(value or "" for name, value in attrs if name in ("epub:type", "role")).lower()
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
                if not heading.endswith(_SENTENCE_CLOSE):
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
        return paragraph

    def text(self) -> str:
        self._end_paragraph()
        return "\n\n".join(self._paragraphs)
