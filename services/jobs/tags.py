"""The book's tags on its files: `book_metadata` (title, author, genre) for libavformat to write into the book,
`add_cover` (mutagen) for the M4B's cover picture, `tag_chapter` (mutagen) on a chapter's file (the chapter's
title, the book as album, the author, the track number). mutagen keeps the M4B's chapter marks (the chapter track
and `chpl` atom that libavformat wrote, services/jobs/book.py) and updates its offsets as the index grows.

A file name for downloads comes from `file_name`: the book's and chapter's titles made safe (letters, digits,
spaces, `-_.,()'` kept, anything else a space; at most 80 characters a part), never the job id alone.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3, TALB, TIT2, TPE1, TRCK, ID3NoHeaderError
from mutagen.mp4 import MP4, MP4Cover
from mutagen.oggopus import OggOpus

from services.jobs.cover import checked_cover

GENRE = "Audiobook"
_UNSAFE = re.compile(r"[^\w\s\-.,()']+")
_MAX_NAME_PART = 80


@dataclass(frozen=True)
class BookTags:
    """Tags are one line each: a JSON `title` or `author` with line breaks had them written into every file's tags."""

    title: str | None = None
    author: str | None = None
    cover: Path | None = None  # a JPEG or PNG file

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", one_line(self.title))
        object.__setattr__(self, "author", one_line(self.author))


def one_line(text: str | None) -> str | None:
    """`text` with every run of whitespace (line breaks, tabs, Unicode separators) folded to one space."""
    if text is None:
        return None
    return " ".join(text.split()) or None


def save_cover(folder: Path, data: bytes, media_type: str) -> Path | None:
    """The cover picture kept in the job's folder until its book is written, once checked as a picture
    (services/jobs/cover.py; None: dropped). `media_type` is what the document said; the picture's own wins."""
    checked = checked_cover(data)
    if checked is None:
        return None
    data, media_type = checked
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("cover.png" if media_type == "image/png" else "cover.jpg")
    path.write_bytes(data)
    return path


def find_cover(folder: Path) -> Path | None:
    return next((p for p in (folder / "cover.jpg", folder / "cover.png") if p.is_file()), None)


def book_metadata(tags: BookTags) -> dict[str, str]:
    """The container tags libavformat writes itself (MP4 `©nam` `©alb` `©ART` `aART` `©gen`, ID3 `TIT2` `TALB`
    `TPE1` `TPE2` `TCON`): written with the chapter marks, in the order readers expect them."""
    metadata = {"genre": GENRE}
    if tags.title:
        metadata.update(title=tags.title, album=tags.title)
    if tags.author:
        metadata.update(artist=tags.author, album_artist=tags.author)
    return metadata


def add_cover(path: Path, fmt: str, tags: BookTags) -> None:
    """The cover picture into the M4B's `covr` atom. An MP3 book keeps none: rewriting its ID3 tag with mutagen
    would reorder the `CHAP` frames, which libavformat reads in file order."""
    if fmt != "m4b" or tags.cover is None or not tags.cover.is_file():
        return
    mp4 = MP4(path)
    if mp4.tags is None:
        mp4.add_tags()
    assert mp4.tags is not None
    png = tags.cover.suffix.lower() == ".png"
    mp4.tags["covr"] = [
        MP4Cover(tags.cover.read_bytes(), MP4Cover.FORMAT_PNG if png else MP4Cover.FORMAT_JPEG)
    ]
    mp4.save()


def tag_chapter(path: Path, fmt: str, title: str, number: int, total: int, tags: BookTags) -> None:
    """The chapter's title, the book as its album, the author and `number/total` on a chapter file. Raw AAC
    (ADTS) has nowhere to keep tags, and a WAV chapter is also the book's source (its header read as it is):
    both are left as they are."""
    track = f"{number}/{total}"
    if fmt == "mp3":
        id3 = _id3(path)
        _set_id3(id3, TIT2, one_line(title))
        _set_id3(id3, TALB, tags.title)
        _set_id3(id3, TPE1, tags.author)
        _set_id3(id3, TRCK, track)
        id3.save(path, v2_version=4)
    elif fmt in ("flac", "opus"):
        audio = FLAC(path) if fmt == "flac" else OggOpus(path)
        if audio.tags is None:
            audio.add_tags()
        comments = {
            "title": one_line(title),
            "album": tags.title,
            "artist": tags.author,
            "tracknumber": str(number),
        }
        for key, value in comments.items():
            if value:
                audio[key] = value
        audio["tracktotal"] = str(total)
        if fmt == "flac" and tags.cover is not None and tags.cover.is_file():
            picture = Picture()
            picture.type, picture.data = 3, tags.cover.read_bytes()
            picture.mime = "image/png" if tags.cover.suffix.lower() == ".png" else "image/jpeg"
            audio.clear_pictures()  # type: ignore[union-attr]
            audio.add_picture(picture)  # type: ignore[union-attr]
        audio.save()


def file_name(*parts: str | None, fallback: str, suffix: str) -> str:
    """`Book - 003 Chapter.mp3`: the parts made safe for any file system, joined by " - "."""
    safe = [_safe(part) for part in parts if part]
    name = " - ".join(part for part in safe if part) or fallback
    return f"{name}{suffix}"


def _safe(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = " ".join(_UNSAFE.sub(" ", text).split()).strip(" .")
    return text[:_MAX_NAME_PART].rstrip(" .")


def _id3(path: Path) -> ID3:
    try:
        return ID3(path)
    except ID3NoHeaderError:
        return ID3()


def _set_id3(id3: ID3, frame: type, value: str | None) -> None:
    if value:
        id3.setall(frame.__name__, [frame(encoding=3, text=[value])])


def _set_mp4(mp4: MP4, key: str, value: str | None) -> None:
    if value and mp4.tags is not None:
        mp4.tags[key] = [value]
