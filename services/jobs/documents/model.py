"""What a document reader returns (a `Document` of `Chapter`s), its error, and the limits applied while reading."""

from __future__ import annotations

from dataclasses import dataclass, field

# Closing punctuation: a title or heading without it gets a period so it is read as a sentence of its own.
SENTENCE_CLOSE = tuple(".!?:;,।॥。！？；：…\"'”’)")
UNTITLED_OPENING = "Introduction"
MAX_METADATA_CHARS = 500  # a document's title or author (the request's fields have the same bound)


class DocumentError(ValueError):
    """A document that cannot be read; the message is shown to the user as it is."""


@dataclass(frozen=True)
class Chapter:
    title: str
    text: str  # what is read aloud, the spoken title included (see the package docstring)


@dataclass(frozen=True)
class Cover:
    """The book's cover picture, as the document holds it (JPEG or PNG)."""

    data: bytes
    media_type: str  # image/jpeg or image/png


@dataclass(frozen=True)
class Document:
    title: str | None
    chapters: tuple[Chapter, ...]
    author: str | None = None
    cover: Cover | None = None

    @property
    def characters(self) -> int:
        return sum(len(chapter.text) for chapter in self.chapters)


MAX_TITLE_CHARS = (
    300  # a chapter title's longest kept form (500 chapters: at most 150,000 characters of titles)
)


@dataclass(frozen=True)
class Limits:
    """How much one job takes; readers stop at the limit instead of reading the rest first."""

    max_characters: int = 2_000_000
    max_chapters: int = 500


@dataclass
class Chapters:
    """Chapters gathered while reading, the limits checked at each step (the first one over them raises)."""

    limits: Limits
    titles: list[str] = field(default_factory=list)
    bodies: list[list[str]] = field(default_factory=list)
    characters: int = 0

    def add(self, title: str, text: str) -> None:
        if len(self.titles) >= self.limits.max_chapters:
            raise DocumentError(
                f"the document has more than {self.limits.max_chapters} chapters; "
                f"a job takes at most {self.limits.max_chapters} chapters"
            )
        # A title is kept in every view of the job: cut to a title's length, so all of a job's titles stay within
        # max_chapters x MAX_TITLE_CHARS (a table of contents carried 3.9 MB of titles into every job view).
        self.titles.append(title[:MAX_TITLE_CHARS])
        self.bodies.append([])
        self.extend(text)

    def extend(self, text: str) -> None:
        """More text for the last chapter (a page that continues it, after a blank line)."""
        self.count(len(text) + (2 if self.bodies[-1] else 0))
        self.bodies[-1].append(text)

    def count(self, characters: int) -> None:
        """Characters read (or about to be kept); DocumentError past the limit."""
        self.characters += characters
        self.check(0)

    def check(self, pending: int) -> None:
        if self.characters + pending > self.limits.max_characters:
            raise DocumentError(
                f"the document has more than {self.limits.max_characters:,} characters; "
                f"a job takes at most {self.limits.max_characters:,} characters"
            )

    def __len__(self) -> int:
        return len(self.titles)

    def chapters(self) -> tuple[Chapter, ...]:
        return tuple(Chapter(t, "\n\n".join(b)) for t, b in zip(self.titles, self.bodies, strict=True))


def spoken(title: str, body: str) -> str:
    """A chapter's text: its title as a sentence of its own, a blank line, the body."""
    line = title if title.endswith(SENTENCE_CLOSE) else f"{title}."
    return f"{line}\n\n{body}" if body else line


def decode_text(data: bytes) -> str:
    """UTF-8 text (a byte order mark allowed), line ends made `\\n`."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError("the document is UTF-16 text; send it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DocumentError(
            f"the document is not UTF-8 text (invalid byte at offset {error.start}); "
            "accepted: UTF-8 text or Markdown, EPUB, PDF, DOCX"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def one_line(text: str) -> str:
    return " ".join(text.split())


def metadata_text(text: str | None) -> str | None:
    """A title or author as a document states it: one line, at most `MAX_METADATA_CHARS`, None when empty."""
    line = one_line(text or "")[:MAX_METADATA_CHARS].strip()
    return line or None
