"""EPUB 2 and 3, read from the ZIP with bounded reads (archive.py): the OPF's metadata (title, authors, cover
picture), its spine, and the table of contents (the EPUB 3 nav, else the NCX).

One chapter per spine document in reading order (non-linear items skipped, a document listed twice read once).
A document is titled by the shallowest table of contents entry that points into it: a chapter whose sections are
listed under it keeps the chapter's title, not its first section's. Else its first heading, else "Chapter N"; a
document with neither a table of contents entry nor a heading continues the chapter before it (books split long
chapters into several files). A chapter whose first paragraph is its title (LibreOffice writes headings as styled
paragraphs) speaks it as a sentence.

Front matter is left out: the nav document; pages that the guide, the landmarks or their own `epub:type` call a
cover, title page, copyright page, dedication, table of contents and the like (`FRONT_MATTER`), even when the
table of contents lists them; pages before the first one the table of contents lists; and, before the first
chapter, pages that front.py recognises by their title or text (pandoc's EPUB 2 title, copyright and dedication
pages, which carry no `epub:type`; LibreOffice's "Section 1" holding the title page). A table of contents entry
LibreOffice made up ("Section N") titles nothing. Pages are parsed as they are unpacked, the limits checked after
each block, so an oversized book stops at its limit. An encrypted (DRM) or unreadable EPUB is refused.
"""

from __future__ import annotations

import codecs
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote
from xml.etree import ElementTree

from services.jobs.documents.archive import Archive, local
from services.jobs.documents.front import is_front_matter, is_made_up
from services.jobs.documents.model import Chapters, Cover, Document, DocumentError, Limits, one_line, spoken
from services.jobs.documents.xhtml import XhtmlText

EPUB_MIMETYPE = b"application/epub+zip"
# Font obfuscation (IDPF, Adobe) lists fonts in encryption.xml; only encrypted content is DRM.
_FONT_EXTENSIONS = (".ttf", ".otf", ".woff", ".woff2")
_DOCUMENT_TYPES = ("application/xhtml+xml", "text/html", "application/x-dtbook+xml")
_COVER_TYPES = {"image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/png": "image/png"}
MAX_COVER_BYTES = 10 * 1024 * 1024
# Markup the parser holds back waiting for its end (an open comment, tag or CDATA section), at most.
_MAX_UNPARSED = 1024 * 1024
# What a guide reference, a landmark or a page's own epub:type calls front matter that is not read.
# (EPUB 3 Structural Semantics words for pages that are about the book, not of it; forewords, prefaces,
# prologues, epigraphs and acknowledgments are read.)
FRONT_MATTER = frozenset(
    "cover frontispiece title-page titlepage halftitlepage seriespage copyright-page imprint imprimatur colophon"
    " dedication contributors other-credits errata revision-history toc landmarks loa loi lot lov index".split()
)
_EPUB_NS = "{http://www.idpf.org/2007/ops}type"
_OPF_NS = "{http://www.idpf.org/2007/opf}"


@dataclass(frozen=True)
class _Item:
    path: str  # the archive path, resolved against the OPF's folder
    media_type: str
    properties: str


def sniff_epub(data: bytes) -> bool:
    """Whether a ZIP's `mimetype` entry says EPUB (its first bytes only, after the archive's checks)."""
    archive = Archive(data, "EPUB")
    try:
        name = archive.name("mimetype")
        if name is None or archive.size(name) > 256:
            return False
        return archive.read(name, 256).strip() == EPUB_MIMETYPE
    finally:
        archive.close()


def read_epub(data: bytes, limits: Limits) -> Document:
    archive = Archive(data, "EPUB")
    try:
        return _read(archive, limits)
    finally:
        archive.close()


def _read(archive: Archive, limits: Limits) -> Document:
    _refuse_drm(archive)
    opf_path = _rootfile(archive)
    opf = archive.xml(opf_path)
    base = posixpath.dirname(opf_path)
    manifest = {
        el.get("id", ""): _Item(
            _resolve(base, el.get("href", "")), el.get("media-type", ""), el.get("properties", "")
        )
        for el in opf.iter()
        if local(el.tag) == "item"
    }
    toc_titles, skipped = _table_of_contents(archive, opf, manifest)
    skipped |= {
        _resolve(base, el.get("href", ""))
        for el in opf.iter()
        if local(el.tag) == "reference" and el.get("type", "").lower() in FRONT_MATTER
    }
    skipped |= {item.path for item in manifest.values() if "nav" in item.properties.split()}

    spine = [
        item
        for ref in (el for el in opf.iter() if local(el.tag) == "itemref")
        if (item := manifest.get(ref.get("idref", ""))) is not None
        and ref.get("linear", "yes") != "no"
        and item.media_type in _DOCUMENT_TYPES
    ]
    # Before the first page the table of contents lists, a page it does not list is front matter (EPUB 2 title
    # pages say nothing else about themselves).
    first = next((i for i, item in enumerate(spine) if item.path in toc_titles), 0)
    skipped |= {item.path for item in spine[:first]}
    book_title, authors = _metadata(opf)
    chapters = Chapters(limits)
    seen: set[str] = set()
    for item in spine:
        if item.path in seen or item.path in skipped:
            continue
        seen.add(item.path)
        title = toc_titles.get(item.path)
        if title is not None and is_made_up(title):
            title = None
        page = _parse_page(archive, item.path, chapters)
        if page is None or page.kinds & FRONT_MATTER:
            continue
        paragraphs = page.paragraphs()
        if not paragraphs:
            continue
        if not len(chapters) and is_front_matter(
            paragraphs, toc_titles.get(item.path) or page.first_heading, book_title, authors
        ):
            continue  # a title, copyright or dedication page the book does not mark as one
        heading = title or page.first_heading
        if heading is None and toc_titles and len(chapters):
            chapters.extend(page.text())  # the rest of the chapter before, in a file of its own
            continue
        if heading is not None and paragraphs[0] == heading:
            paragraphs[0] = spoken(heading, "")  # a heading written as a paragraph, read as a sentence
        chapters.add(heading or f"Chapter {len(chapters) + 1}", "\n\n".join(paragraphs))
    return Document(book_title, chapters.chapters(), author=authors, cover=_cover(archive, opf, manifest))


def _refuse_drm(archive: Archive) -> None:
    if archive.name("META-INF/rights.xml") is not None:
        raise DocumentError("the EPUB is encrypted (DRM); only DRM-free books can be read")
    name = archive.name("META-INF/encryption.xml")
    if name is None:
        return
    try:
        root = archive.xml(name)
    except DocumentError:
        root = None  # an encryption manifest that cannot be read: assume the worst
    uris = (
        []
        if root is None
        else [el.get("URI", "") for el in root.iter() if local(el.tag) == "CipherReference"]
    )
    if root is None or any(not unquote(uri).lower().endswith(_FONT_EXTENSIONS) for uri in uris):
        raise DocumentError("the EPUB is encrypted (DRM); only DRM-free books can be read")


def _rootfile(archive: Archive) -> str:
    container = archive.name("META-INF/container.xml")
    if container is None:
        raise DocumentError("the EPUB cannot be read (it has no META-INF/container.xml)")
    for el in archive.xml(container).iter():
        if local(el.tag) == "rootfile" and el.get("full-path"):
            found = archive.name(unquote(el.get("full-path", "")))
            if found is not None:
                return found
    raise DocumentError("the EPUB cannot be read (its package document is missing)")


def _resolve(base: str, href: str) -> str:
    """An href (relative to the file at `base`'s folder) as an archive path: no fragment, unquoted, normalised."""
    path = unquote(href.split("#", 1)[0])
    return posixpath.normpath(posixpath.join(base, path)).lstrip("/") if path else ""


def _metadata(opf: ElementTree.Element) -> tuple[str | None, str | None]:
    """The book's first title, and its authors (creators without a role other than author) joined by commas."""
    roles = {  # EPUB 3: <meta refines="#id" property="role">aut</meta>
        (el.get("refines") or "").lstrip("#"): (el.text or "").strip()
        for el in opf.iter()
        if local(el.tag) == "meta" and el.get("property") == "role"
    }
    title: str | None = None
    authors: list[str] = []
    for el in opf.iter():
        name, text = local(el.tag), one_line(el.text or "")
        if name == "title" and title is None and text:
            title = text
        elif name == "creator" and text:
            role = el.get(f"{_OPF_NS}role") or el.get("role") or roles.get(el.get("id") or "", "")
            if role in ("", "aut") and text not in authors:
                authors.append(text)
    return title, ", ".join(authors) or None


def _cover(archive: Archive, opf: ElementTree.Element, manifest: dict[str, _Item]) -> Cover | None:
    """EPUB 3's `cover-image` item, else EPUB 2's `<meta name="cover">`; JPEG or PNG, not too large; else none."""
    item = next((i for i in manifest.values() if "cover-image" in i.properties.split()), None)
    if item is None:
        meta = next((el for el in opf.iter() if local(el.tag) == "meta" and el.get("name") == "cover"), None)
        item = manifest.get(meta.get("content", "")) if meta is not None else None
    name = archive.name(item.path) if item is not None else None
    if item is None or name is None or item.media_type.lower() not in _COVER_TYPES:
        return None
    if archive.size(name) > MAX_COVER_BYTES:
        return None
    return Cover(archive.read(name, MAX_COVER_BYTES), _COVER_TYPES[item.media_type.lower()])


def _table_of_contents(
    archive: Archive, opf: ElementTree.Element, manifest: dict[str, _Item]
) -> tuple[dict[str, str], set[str]]:
    """{document path: title} from the shallowest entry pointing into each document, and the documents the
    landmarks call front matter. The EPUB 3 nav when it can be read, else the NCX, else nothing."""
    nav = next((i for i in manifest.values() if "nav" in i.properties.split()), None)
    if nav is not None and (name := archive.name(nav.path)) is not None:
        try:
            return _nav_entries(archive.xml(name), posixpath.dirname(nav.path))
        except DocumentError:
            pass  # a nav that is not well-formed XML (HTML entities): the NCX may do
    spine = next((el for el in opf.iter() if local(el.tag) == "spine"), None)
    ncx = manifest.get(spine.get("toc", "")) if spine is not None else None
    ncx = ncx or next((i for i in manifest.values() if i.media_type == "application/x-dtbncx+xml"), None)
    if ncx is not None and (name := archive.name(ncx.path)) is not None:
        try:
            return _ncx_entries(archive.xml(name), posixpath.dirname(ncx.path)), set()
        except DocumentError:
            pass
    return {}, set()


def _shallowest(entries: list[tuple[int, str, str]]) -> dict[str, str]:
    """(depth, path, title) in reading order -> {path: title of its shallowest entry (the first among equals)}."""
    best: dict[str, tuple[int, str]] = {}
    for depth, path, title in entries:
        if path and title and (path not in best or depth < best[path][0]):
            best[path] = (depth, title)
    return {path: title for path, (_, title) in best.items()}


def _nav_entries(root: ElementTree.Element, base: str) -> tuple[dict[str, str], set[str]]:
    entries: list[tuple[int, str, str]] = []
    front: set[str] = set()
    for nav in (el for el in root.iter() if local(el.tag) == "nav"):
        kind = (nav.get(_EPUB_NS) or nav.get("role") or "").lower()
        top = next((el for el in nav if local(el.tag) == "ol"), None)
        if top is None:
            continue
        if "toc" in kind.split():
            _walk_ol(top, base, 1, entries)
        elif "landmarks" in kind.split():
            for link in (el for el in top.iter() if local(el.tag) == "a"):
                if set((link.get(_EPUB_NS) or "").lower().split()) & FRONT_MATTER:
                    front.add(_resolve(base, link.get("href", "")))
    if not entries:
        raise DocumentError("the nav document has no table of contents")
    return _shallowest(entries), front


def _walk_ol(ol: ElementTree.Element, base: str, depth: int, out: list[tuple[int, str, str]]) -> None:
    for li in (el for el in ol if local(el.tag) == "li"):
        label = next((el for el in li if local(el.tag) in ("a", "span")), None)
        if label is not None:
            title = one_line("".join(label.itertext()))
            href = label.get("href", "") if local(label.tag) == "a" else ""
            if not href:  # a heading without a link (a part): it titles where its first entry points
                first = next((a for a in li.iter() if local(a.tag) == "a" and a.get("href")), None)
                href = first.get("href", "") if first is not None else ""
            out.append((depth, _resolve(base, href), title))
        for child in (el for el in li if local(el.tag) == "ol"):
            _walk_ol(child, base, depth + 1, out)


def _ncx_entries(root: ElementTree.Element, base: str) -> dict[str, str]:
    entries: list[tuple[int, str, str]] = []
    nav_map = next((el for el in root.iter() if local(el.tag) == "navMap"), None)

    def walk(parent: ElementTree.Element, depth: int) -> None:
        for point in (el for el in parent if local(el.tag) == "navPoint"):
            label = next((el for el in point.iter() if local(el.tag) == "text"), None)
            content = next((el for el in point if local(el.tag) == "content"), None)
            title = one_line(label.text or "") if label is not None else ""
            src = content.get("src", "") if content is not None else ""
            entries.append((depth, _resolve(base, src), title))
            walk(point, depth + 1)

    if nav_map is not None:
        walk(nav_map, 1)
    return _shallowest(entries)


def _parse_page(archive: Archive, path: str, chapters: Chapters) -> XhtmlText | None:
    """The page's text, parsed as it is unpacked; the character limit checked after each block."""
    name = archive.name(path)
    if name is None:
        return None
    page = XhtmlText()
    decoder: codecs.IncrementalDecoder | None = None
    try:
        for block in archive.stream(name):
            if decoder is None:
                decoder = codecs.getincrementaldecoder(_encoding(block))(errors="replace")
            page.feed(decoder.decode(block))
            chapters.check(page.characters)
            if len(page.rawdata) > _MAX_UNPARSED:  # re-scanned at every block: quadratic if it may grow
                raise DocumentError(f"the EPUB page {path!r} holds an unclosed comment, tag or script")
        if decoder is not None:
            page.feed(decoder.decode(b"", final=True))
        page.close()
    except DocumentError:
        raise
    except Exception as error:  # a malformed page: the book is not readable as it stands
        raise DocumentError(f"the EPUB page {path!r} cannot be read ({_reason(error)})") from None
    return page


def _encoding(start: bytes) -> str:
    declared = re.match(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']", start)
    name = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        found = codecs.lookup(name).name
    except LookupError:
        found = "utf-8"
    return "utf-8-sig" if found == "utf-8" else found  # a byte order mark is not text


def _reason(error: Exception) -> str:
    message = str(error).strip().strip("'\"")
    return message[:200] if message else type(error).__name__
