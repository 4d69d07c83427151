"""Chapter files tagged as a book's tracks (the files the job's encoders write), and download names made safe."""

from __future__ import annotations

import io
from pathlib import Path

import mutagen
import pytest
from PIL import Image

from services.jobs.render import encode_file
from services.jobs.tags import BookTags, file_name, find_cover, save_cover, tag_chapter
from tests.unit.services.jobs.test_job_book import write_wav

COVER = Path(__file__).resolve().parents[3] / "books" / "cover.png"


@pytest.mark.parametrize(("fmt", "suffix"), [("mp3", "mp3"), ("flac", "flac"), ("opus", "ogg")])
def test_a_chapter_file_carries_its_title_the_book_the_author_and_its_number(
    tmp_path: Path, fmt: str, suffix: str
) -> None:
    target = tmp_path / f"chapter-002.{suffix}"
    encode_file(write_wav(tmp_path / "c.wav", 0.5, rate=48_000 if fmt == "opus" else 24_000), target, fmt)
    tag_chapter(target, fmt, "Conveying Copies", 2, 3, BookTags("The Little Licence", "Ada Writer", COVER))
    easy = mutagen.File(target, easy=True)
    assert easy is not None and easy.tags is not None
    assert easy["title"] == ["Conveying Copies"] and easy["album"] == ["The Little Licence"]
    assert easy["artist"] == ["Ada Writer"]
    assert easy["tracknumber"][0] in ("2", "2/3")
    assert mutagen.File(target).info.length == pytest.approx(0.5, abs=0.1)  # still the audio it was


def test_raw_aac_and_wav_chapters_are_left_as_they_are(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "c.wav", 0.2)
    before = wav.read_bytes()
    tag_chapter(wav, "wav", "T", 1, 1, BookTags("B", "A"))
    assert wav.read_bytes() == before  # the book reads this file's header as it is


def test_download_names_are_safe_and_never_empty() -> None:
    assert file_name("Ada Writer", "The Little Licence", fallback="job_1", suffix=".m4b") == (
        "Ada Writer - The Little Licence.m4b"
    )
    assert file_name("../../etc/passwd", None, fallback="job_1", suffix=".m4b") == "etc passwd.m4b"
    assert file_name('A "quoted"\r\nname/with\\slashes:*?', fallback="x", suffix=".mp3") == (
        "A quoted name with slashes.mp3"
    )
    assert file_name(None, "...", fallback="job_1-003", suffix=".mp3") == "job_1-003.mp3"
    assert len(file_name("x" * 500, "y" * 500, fallback="f", suffix=".mp3")) <= 80 * 2 + 3 + 4
    assert file_name("Ünïcödé 書名", fallback="f", suffix=".mp3") == "Ünïcödé 書名.mp3"


def test_the_cover_is_kept_beside_the_job_and_found_again(tmp_path: Path) -> None:
    assert find_cover(tmp_path / "job") is None
    picture = io.BytesIO()
    Image.new("RGB", (8, 8)).save(
        picture, "PNG"
    )  # a real picture: covers are checked (test_cover_and_tags.py)
    path = save_cover(tmp_path / "job", picture.getvalue(), "image/png")
    assert path is not None and path.name == "cover.png" and find_cover(tmp_path / "job") == path


def test_the_author_travels_in_the_job_options_and_older_rows_still_load() -> None:
    from services.jobs.records import JobOptions

    assert JobOptions.from_json(JobOptions(author="Ada Writer").to_json()).author == "Ada Writer"
    older = '{"voice": null, "format": "mp3", "book_format": "m4b", "sample_rate": 24000, "speed": null}'
    assert JobOptions.from_json(older).author is None
