"""Books made by real tools (tests/books/README.md) through a real server with curl: a pandoc EPUB with a nested
table of contents, a title page and a cover comes out titled by its top-level entries, with its title, author and
cover in the job, the chapter files' tags and the M4B; downloads are named by book and chapter; a PDF and a DOCX
give the same chapters; a ZIP bomb is a 400 in the error envelope and the server's memory stays where it was."""

from __future__ import annotations

import io
import json
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import psutil
import pytest
from mutagen.id3 import ID3
from mutagen.mp4 import MP4

from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.e2e.test_jobs import A, job_env, wait_for

BOOKS = Path(__file__).resolve().parents[1] / "books"
TITLES = ["Definitions and Basic Permissions", "Conveying Copies", "Termination"]


@pytest.fixture(scope="module")
def books_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("books")
    running = start_server(demo_model_dir, root / "server.log", job_env(root))
    yield running
    stop_server(running)


def curl(*args: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one curl call."""
    done = subprocess.run(
        ["curl", "-sS", "-D", "-", "-H", f"Authorization: {A['Authorization']}", *args],
        capture_output=True,
        timeout=120,
        check=True,
    )
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def download_name(headers: dict[str, str]) -> str:
    """The file name of a Content-Disposition header (RFC 6266: `filename*=utf-8''...` for names with spaces)."""
    disposition = headers["content-disposition"]
    if "filename*=utf-8''" in disposition:
        return unquote(disposition.split("filename*=utf-8''", 1)[1].split(";")[0])
    return disposition.split('filename="', 1)[1].split('"')[0]


def upload(base: str, name: str, *fields: str) -> dict:
    form = [arg for field in fields for arg in ("-F", field)]
    status, _, body = curl("-F", f"file=@{BOOKS / name}", *form, f"{base}/v1/tts/jobs")
    assert status == 202, body
    return json.loads(body)


def test_a_pandoc_epub_becomes_a_book_titled_tagged_and_named_as_the_book_is(
    books_server: RunningServer, tmp_path: Path
) -> None:
    base = books_server.base_url
    job = upload(base, "nested.epub", "format=mp3", "book_format=m4b")
    assert [c["title"] for c in job["chapters"]] == TITLES  # not "0. Definitions.", not the title page
    assert job["title"] == "The Little Licence" and job["author"] == "Ada Writer"
    done = wait_for(base, job["id"], lambda j: j["status"] in ("done", "failed"))
    assert done["status"] == "done", done

    status, headers, chapter = curl(f"{base}{done['chapters'][0]['url']}")
    assert status == 200
    assert download_name(headers) == "The Little Licence - 001 Definitions and Basic Permissions.mp3"
    (tmp_path / "one.mp3").write_bytes(chapter)
    tags = ID3(tmp_path / "one.mp3")
    assert tags["TIT2"].text == [TITLES[0]] and tags["TALB"].text == ["The Little Licence"]
    assert tags["TPE1"].text == ["Ada Writer"] and tags["TRCK"].text == ["1/3"]

    status, headers, book = curl(f"{base}/v1/tts/jobs/{job['id']}/book")
    assert status == 200 and download_name(headers) == "Ada Writer - The Little Licence.m4b"
    (tmp_path / "book.m4b").write_bytes(book)
    m4b = MP4(tmp_path / "book.m4b")
    assert m4b.chapters is not None and [m.title for m in m4b.chapters] == TITLES
    assert m4b.tags is not None
    assert m4b.tags["©nam"] == ["The Little Licence"] and m4b.tags["©ART"] == ["Ada Writer"]
    assert bytes(m4b.tags["covr"][0]) == (BOOKS / "cover.png").read_bytes()


@pytest.mark.parametrize("name", ["license.pdf", "license.docx"])
def test_a_pdf_and_a_docx_give_the_book_s_chapters(books_server: RunningServer, name: str) -> None:
    job = upload(books_server.base_url, name, "book_format=null", "author=Someone Else")
    assert [c["title"] for c in job["chapters"]] == TITLES
    assert job["title"] == "The Little Licence" and job["author"] == "Someone Else"  # the request's wins
    status, _, _ = curl("-X", "DELETE", f"{books_server.base_url}/v1/tts/jobs/{job['id']}")
    assert status == 202
    long_author = f"author={'x' * 501}"
    status, _, body = curl(
        "-F", f"file=@{BOOKS / name}", "-F", long_author, f"{books_server.base_url}/v1/tts/jobs"
    )
    assert status == 400 and json.loads(body)["error"]["code"] == "VALIDATION_ERROR", body


def test_a_zip_bomb_is_refused_and_the_server_keeps_its_memory(
    books_server: RunningServer, tmp_path: Path
) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("mimetype", b"application/epub+zip" + b"\0" * 200_000_000, zipfile.ZIP_BZIP2)
        archive.writestr("OEBPS/page.xhtml", b"<p>word</p>" * 5_000_000, zipfile.ZIP_DEFLATED)
    (tmp_path / "bomb").write_bytes(bomb.getvalue())
    server = psutil.Process(books_server.process.pid)
    before = sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
    for _ in range(3):
        started = time.monotonic()
        status, _, body = curl("-F", f"file=@{tmp_path / 'bomb'}", f"{books_server.base_url}/v1/tts/jobs")
        assert status == 400 and time.monotonic() - started < 30
        error = json.loads(body)["error"]
        assert error["code"] == "VALIDATION_ERROR" and "compressed with a method" in error["message"]
    after = sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
    assert after - before < 256 * 1024 * 1024
