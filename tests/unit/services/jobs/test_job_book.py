"""The whole work in one file: two WAV chapters become an M4B and an MP3 whose chapter marks players read."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest
from mutagen.id3 import ID3
from mutagen.mp4 import MP4

from services.jobs.book import BookChapter, BookFormat, check_book_format, write_book

RATE = 24_000
DURATIONS = (1.3, 0.7)
TITLES = ("Première partie", "The End")
TOLERANCE_S = 0.05


def write_wav(
    path: Path, seconds: float, *, rate: int = RATE, channels: int = 1, pitch: float = 220.0
) -> Path:
    n = round(seconds * rate)
    tone = (0.3 * 32767 * np.sin(2 * np.pi * pitch * np.arange(n) / rate)).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.repeat(tone, channels).tobytes())
    return path


@pytest.fixture
def chapters(tmp_path: Path) -> list[BookChapter]:
    return [
        BookChapter(title, write_wav(tmp_path / f"{i}.wav", seconds, pitch=220.0 * (i + 1)))
        for i, (title, seconds) in enumerate(zip(TITLES, DURATIONS, strict=True))
    ]


def read_marks(path: Path) -> tuple[float, list[tuple[str, float, float]]]:
    """The duration and the chapter marks (title, start, end in seconds) as libavformat reads them."""
    with av.open(str(path)) as container:
        assert container.duration is not None
        marks = [
            (c["metadata"]["title"], float(c["start"] * c["time_base"]), float(c["end"] * c["time_base"]))
            for c in container.chapters()
            if c["time_base"] is not None
        ]
        return container.duration / av.time_base, marks


def expected_starts() -> list[float]:
    return [sum(DURATIONS[:i]) for i in range(len(DURATIONS))]


@pytest.mark.parametrize("fmt", ["m4b", "mp3"])
def test_chapters_are_marked_at_each_wav_start_and_the_length_is_the_sum(
    tmp_path: Path, chapters: list[BookChapter], fmt: BookFormat
) -> None:
    out = tmp_path / f"book.{fmt}"
    seconds = write_book(chapters, out, fmt=fmt, title="A Test Book")
    assert seconds == pytest.approx(sum(DURATIONS), abs=1e-9)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("book")] == [out.name]
    duration, marks = read_marks(out)
    assert duration == pytest.approx(sum(DURATIONS), abs=TOLERANCE_S)
    assert [title for title, _, _ in marks] == list(TITLES)
    assert [start for _, start, _ in marks] == pytest.approx(expected_starts(), abs=TOLERANCE_S)
    assert marks[-1][2] == pytest.approx(sum(DURATIONS), abs=TOLERANCE_S)
    with av.open(str(out)) as container:
        assert container.metadata.get("title") == "A Test Book"
        audio = container.streams.audio[0]
        assert audio.codec_context.name in ("aac", "mp3float", "mp3")
        assert audio.sample_rate == RATE and audio.channels == 1


def test_m4b_has_the_nero_chapter_list_and_a_chapter_track(
    tmp_path: Path, chapters: list[BookChapter]
) -> None:
    out = tmp_path / "book.m4b"
    write_book(chapters, out, fmt="m4b")
    tags = MP4(str(out))
    assert tags.chapters is not None  # mutagen reads the `chpl` atom
    assert [c.title for c in tags.chapters] == list(TITLES)
    assert [c.start for c in tags.chapters] == pytest.approx(expected_starts(), abs=TOLERANCE_S)
    with av.open(str(out)) as container:  # the QuickTime chapter track: a text track beside the audio
        assert [s.type for s in container.streams] == ["audio", "data"]


def test_mp3_has_id3_chap_and_ctoc_frames(tmp_path: Path, chapters: list[BookChapter]) -> None:
    out = tmp_path / "book.mp3"
    write_book(chapters, out, fmt="mp3", title="A Test Book")
    tags = ID3(str(out))
    chaps = sorted(tags.getall("CHAP"), key=lambda frame: frame.start_time)
    assert [frame.sub_frames["TIT2"].text[0] for frame in chaps] == list(TITLES)
    assert [frame.start_time / 1000 for frame in chaps] == pytest.approx(expected_starts(), abs=TOLERANCE_S)
    assert [frame.end_time / 1000 for frame in chaps] == pytest.approx(
        [sum(DURATIONS[: i + 1]) for i in range(len(DURATIONS))], abs=TOLERANCE_S
    )
    (toc,) = tags.getall("CTOC")
    assert toc.child_element_ids == [frame.element_id for frame in chaps]
    assert tags["TIT2"].text == ["A Test Book"]


def test_long_chapters_are_read_in_blocks(tmp_path: Path) -> None:
    """Chapters longer than one read block (16,384 samples) keep their full length."""
    chapters = [
        BookChapter("Long", write_wav(tmp_path / "long.wav", 6.0)),
        BookChapter("Short", write_wav(tmp_path / "short.wav", 0.5)),
    ]
    out = tmp_path / "book.mp3"
    assert write_book(chapters, out, fmt="mp3") == pytest.approx(6.5)
    duration, marks = read_marks(out)
    assert duration == pytest.approx(6.5, abs=TOLERANCE_S)
    assert marks[1][1] == pytest.approx(6.0, abs=TOLERANCE_S)


def test_chapters_that_cannot_make_one_book_are_refused(tmp_path: Path) -> None:
    a = BookChapter("A", write_wav(tmp_path / "a.wav", 0.2))
    other_rate = BookChapter("B", write_wav(tmp_path / "b.wav", 0.2, rate=16_000))
    stereo = BookChapter("C", write_wav(tmp_path / "c.wav", 0.2, channels=2))
    not_wav = tmp_path / "d.wav"
    not_wav.write_bytes(b"not a wav file at all")
    out = tmp_path / "book.m4b"
    with pytest.raises(ValueError, match="different sample rates"):
        write_book([a, other_rate], out, fmt="m4b")
    with pytest.raises(ValueError, match="16-bit mono"):
        write_book([a, stereo], out, fmt="m4b")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        write_book([BookChapter("D", not_wav)], out, fmt="m4b")
    with pytest.raises(ValueError, match="at least one chapter"):
        write_book([], out, fmt="mp3")
    assert not out.exists()


def test_format_and_rate_are_checked_up_front() -> None:
    check_book_format("m4b", 24_000)
    check_book_format("mp3", 44_100)
    with pytest.raises(ValueError, match="accepted sample rates"):
        check_book_format("mp3", 96_000)
    with pytest.raises(ValueError, match="unsupported book format"):
        check_book_format("ogg", 24_000)


@pytest.mark.parametrize("fmt", ["m4b", "mp3"])
def test_the_book_carries_its_author_and_cover_and_keeps_its_marks(
    tmp_path: Path, chapters: list[BookChapter], fmt: BookFormat
) -> None:
    cover = (
        Path(__file__).resolve().parents[3] / "books" / "cover.png"
    )  # made by ffmpeg (tests/books/README.md)
    out = tmp_path / f"book.{fmt}"
    write_book(chapters, out, fmt=fmt, title="A Test Book", author="Ada Writer", cover=cover)
    if fmt == "m4b":
        tags = MP4(str(out))
        assert tags.tags is not None
        assert tags.tags["©nam"] == ["A Test Book"] and tags.tags["©ART"] == ["Ada Writer"]
        assert bytes(tags.tags["covr"][0]) == cover.read_bytes()
    else:
        id3 = ID3(str(out))
        assert id3["TPE1"].text == ["Ada Writer"] and id3["TALB"].text == ["A Test Book"]
        assert not id3.getall("APIC")  # the CHAP frames stay in libavformat's order instead (tags.py)
    duration, marks = read_marks(out)  # the marks and the audio survive the tags (ffprobe reads them)
    assert [title for title, _, _ in marks] == list(TITLES)
    assert [start for _, start, _ in marks] == pytest.approx(expected_starts(), abs=TOLERANCE_S)
    assert duration == pytest.approx(sum(DURATIONS), abs=TOLERANCE_S)
