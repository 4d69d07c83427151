"""A ZIP container (EPUB, DOCX) checked whole before any entry is read, and read with bounded reads.

Every entry's declared size, its compression ratio and method are checked from the central directory first (a
bomb is refused before one byte is unpacked); then each entry is read at most once, a block at a time, with a
byte cap that does not trust the declared size alone. Small XML (the OPF, nav, container.xml) is parsed with the
standard library's expat, which fetches nothing, after refusing any entity or DTD declaration (no entity
expansion, no billion laughs).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from xml.etree import ElementTree

from services.jobs.documents.model import DocumentError

# The whole archive, unpacked: far above any real book's text, far below what a process may hold.
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_ENTRY_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 10_000
# Text compresses 3-10x; a bomb 1000x. Entries under the floor may compress as they like (a page of spaces).
MAX_RATIO = 100
RATIO_FLOOR_BYTES = 1024 * 1024
# EPUB and Office files allow these two only; bzip2 and LZMA are how small bombs get their ratios.
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
MAX_XML_BYTES = 4 * 1024 * 1024  # an OPF, a nav or NCX document, container.xml, encryption.xml
_BLOCK = 64 * 1024
_DECLARATION = re.compile(rb"<!\s*(ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)


class Archive:
    def __init__(self, data: bytes, what: str) -> None:
        """`what` names the kind in messages ("EPUB", "DOCX")."""
        self.what = what
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            entries = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            raise DocumentError(f"the file is not an {what} (not a ZIP archive)") from None
        self._check(entries)
        self._entries = {entry.filename: entry for entry in entries}
        self._folded = {name.lower(): name for name in self._entries}

    def _check(self, entries: list[zipfile.ZipInfo]) -> None:
        if len(entries) > MAX_ENTRIES:
            raise DocumentError(f"the {self.what} has more than {MAX_ENTRIES:,} files inside")
        total = 0
        for entry in entries:
            if entry.compress_type not in _METHODS:
                raise DocumentError(
                    f"the {self.what} holds {entry.filename!r} compressed with a method it does not allow "
                    "(only stored and deflated)"
                )
            if entry.file_size > MAX_ENTRY_BYTES:
                raise DocumentError(f"the {self.what} is too large once unpacked ({entry.filename!r})")
            ratio = entry.file_size / max(entry.compress_size, 1)
            if entry.file_size > RATIO_FLOOR_BYTES and ratio > MAX_RATIO:
                raise DocumentError(
                    f"the {self.what} holds {entry.filename!r} compressed {ratio:,.0f} times (a ZIP bomb?)"
                )
            total += entry.file_size
        if total > MAX_UNPACKED_BYTES:
            raise DocumentError(f"the {self.what} is too large once unpacked")

    def close(self) -> None:
        self._zip.close()

    def name(self, path: str) -> str | None:
        """The entry's name as stored (paths compare case-insensitively, as some writers spell them), or None."""
        if path in self._entries:
            return path
        return self._folded.get(path.lower())

    def size(self, name: str) -> int:
        return self._entries[name].file_size

    def stream(self, name: str, cap: int = MAX_ENTRY_BYTES) -> Iterator[bytes]:
        """The entry's bytes a block at a time; DocumentError past `cap` or its declared size."""
        entry = self._entries[name]
        limit = min(cap, entry.file_size)
        read = 0
        try:
            with self._zip.open(entry) as source:
                while block := source.read(_BLOCK):
                    read += len(block)
                    if read > limit:
                        raise DocumentError(f"the {self.what} part {name!r} is larger than it may be")
                    yield block
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise DocumentError(f"the {self.what} part {name!r} cannot be read ({error})") from None

    def read(self, name: str, cap: int) -> bytes:
        return b"".join(self.stream(name, cap))

    def xml(self, name: str) -> ElementTree.Element:
        """A small XML entry, parsed; DocumentError when it is too large, declares entities or is malformed."""
        data = self.read(name, MAX_XML_BYTES)
        return parse_xml(data, f"the {self.what} part {name!r}")


def parse_xml(data: bytes, what: str) -> ElementTree.Element:
    if _DECLARATION.search(data):
        raise DocumentError(f"{what} declares entities or a DTD, which are not read")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise DocumentError(f"{what} is not well-formed XML ({error})") from None


def local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]
