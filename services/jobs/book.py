"""The whole work in one file with chapter marks: `write_book(chapters, out, fmt="m4b" | "mp3")`.

Each chapter is a 16-bit mono PCM WAV file (the canonical header with exact sizes), every chapter at the same
sample rate. The book is encoded at that rate:
- M4B: AAC in an MP4 container (FFmpeg's `ipod` muxer), with the chapters both as a QuickTime chapter text
  track (Apple players) and as a Nero `chpl` atom (most other players and taggers); the work's title in the
  `©nam` tag, the author in `©ART`, the cover in `covr` (tags by mutagen: services/jobs/tags.py). The index
  (moov) stays at the end: moving it to the front ("faststart") rewrites the whole file in
  the trailer, which PyAV before 19 runs holding the GIL, stalling every live stream in the process for the
  length of the copy; players read the index from the end of a downloaded file or with a range request.
- MP3: with an ID3v2 tag holding one `CHAP` frame per chapter (its title in a `TIT2` sub-frame) and an ordered
  top-level `CTOC` frame listing them, as the ID3v2 chapter addendum describes; the title in `TIT2` and `TALB`, the
  author in `TPE1`; no cover (services/jobs/tags.py says why).

Both go through PyAV (libavformat writes these chapter structures itself), so no FFmpeg program is needed.
Chapter marks come from the WAV headers' sample counts, known before the first byte is encoded; each WAV is read
in blocks, so a book of any length holds a block of samples in memory, not the book.

`write_book` is blocking (it encodes the whole book): async callers run it in a thread
(`await asyncio.to_thread(write_book, ...)`). It writes to a temporary file beside `out` and renames it when
done, so `out` exists only when it is complete.
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import av
import numpy as np
import numpy.typing as npt

from audio.encoders import check_format_rate, default_bitrate
from services.jobs.tags import BookTags, add_cover, book_metadata

BookFormat = Literal["m4b", "mp3"]
# (container, encoder, the format table entry whose rates the encoder takes), per book format.
_SPECS: dict[str, tuple[str, str, str]] = {
    "m4b": ("ipod", "aac", "aac"),
    "mp3": ("mp3", "libmp3lame", "mp3"),
}
# Samples read and encoded at a time (~0.7 s at 24 kHz): small enough that an encode call holds the GIL briefly.
_BLOCK_FRAMES = 1 << 14


@dataclass(frozen=True)
class BookChapter:
    title: str
    wav_path: Path  # 16-bit mono PCM WAV


@dataclass(frozen=True)
class _Source:
    chapter: BookChapter
    frames: int


def check_book_format(fmt: str, sample_rate: int) -> None:
    """ValueError unless a book in `fmt` can be written from chapters at `sample_rate` (call it before a job
    renders anything, so a bad pair fails at once rather than after the last chapter)."""
    if fmt not in _SPECS:
        raise ValueError(f"unsupported book format {fmt!r}; accepted: {', '.join(_SPECS)}")
    check_format_rate(_SPECS[fmt][2], sample_rate)


def write_book(
    chapters: Sequence[BookChapter],
    out: Path,
    *,
    fmt: BookFormat,
    title: str | None = None,
    author: str | None = None,
    cover: Path | None = None,
) -> float:
    """Encode `chapters` in order into one `fmt` file at `out`, a chapter mark at the start of each, tagged with
    the title, author and cover picture (services/jobs/tags.py); returns the book's length in seconds. Blocking: run it in a thread from async code. ValueError for chapters that are not
    16-bit mono WAV at one rate, or a rate the format cannot take."""
    if not chapters:
        raise ValueError("a book needs at least one chapter")
    sources, sample_rate = _inspect(chapters)
    check_book_format(fmt, sample_rate)
    container_format, encoder, table_name = _SPECS[fmt]
    partial = out.with_name(out.name + ".partial")
    try:
        with av.open(str(partial), mode="w", format=container_format) as container:
            tags = BookTags(title, author, cover)
            container.metadata.update(book_metadata(tags))
            container.set_chapters(_marks(sources, sample_rate))
            # An audio encoder by name: PyAV types the stream as any kind of stream.
            stream = cast(av.AudioStream, container.add_stream(encoder, rate=sample_rate))
            stream.layout = "mono"
            stream.bit_rate = default_bitrate(table_name, sample_rate) or 64_000
            time_base = Fraction(1, sample_rate)
            pts = 0
            for source in sources:
                for block in _blocks(source):
                    frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
                    frame.sample_rate = sample_rate
                    frame.time_base = time_base
                    frame.pts = pts
                    pts += len(block)
                    for packet in stream.encode(frame):
                        container.mux(packet)
            for packet in stream.encode(None):  # drain the encoder, padding its last frame
                container.mux(packet)
        add_cover(partial, fmt, tags)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return pts / sample_rate


def _inspect(chapters: Sequence[BookChapter]) -> tuple[list[_Source], int]:
    """Each chapter's sample count from its header, and the one sample rate they share."""
    sources: list[_Source] = []
    rates: set[int] = set()
    for chapter in chapters:
        try:
            with wave.open(str(chapter.wav_path), "rb") as reader:
                channels, width, rate, frames = reader.getparams()[:4]
        except (wave.Error, EOFError) as error:
            raise ValueError(f"{chapter.wav_path.name}: not a PCM WAV file ({error})") from None
        if channels != 1 or width != 2:
            raise ValueError(f"{chapter.wav_path.name}: a book chapter must be 16-bit mono WAV")
        rates.add(rate)
        # A streaming header (unknown length) claims more samples than the file holds: the marks would be wrong.
        if frames * 2 > chapter.wav_path.stat().st_size:
            raise ValueError(f"{chapter.wav_path.name}: the WAV header does not give its exact length")
        if frames == 0:
            raise ValueError(f"{chapter.wav_path.name}: the chapter has no audio")
        sources.append(_Source(chapter, frames))
    if len(rates) != 1:
        raise ValueError(f"the chapters have different sample rates ({sorted(rates)}); a book has one")
    return sources, rates.pop()


def _marks(sources: Sequence[_Source], sample_rate: int) -> list[av.container.Chapter]:
    marks: list[av.container.Chapter] = []
    start = 0
    for i, source in enumerate(sources):
        end = start + source.frames
        marks.append(
            {
                "id": i + 1,
                "start": start,
                "end": end,
                "time_base": Fraction(1, sample_rate),
                "metadata": {"title": source.chapter.title},
            }
        )
        start = end
    return marks


def _blocks(source: _Source) -> Iterator[npt.NDArray[np.int16]]:
    """The chapter's samples, a block at a time (exactly the header's count)."""
    left = source.frames
    with wave.open(str(source.chapter.wav_path), "rb") as reader:
        while left > 0:
            data = reader.readframes(min(left, _BLOCK_FRAMES))
            if not data:
                raise ValueError(f"{source.chapter.wav_path.name}: the file ends before its header says")
            block = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
            left -= len(block)
            yield block
