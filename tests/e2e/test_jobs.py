"""Long-form jobs against a real server on the demo checkpoint: an EPUB (built here) becomes chapter files whose
lengths follow their text and one M4B with a chapter mark per chapter, progress arrives over SSE, another key sees
nothing, DELETE cancels; and a job survives its server killed mid-chapter (kill -9): the next server finishes it
without rendering the finished chapter again, each chapter rendered to completion (and charged) once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ebooklib import epub
from mutagen.mp4 import MP4

from services.jobs.records import job_view
from services.jobs.store import SqliteJobStore
from tests.e2e.conftest import RunningServer, start_server, stop_server

KEY_A, KEY_B = "jobs-key-a-0123456789", "jobs-key-b-0123456789"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
SENTENCE = "The boats came in at dawn and nobody was waiting on the quay. "
# Chapter texts of growing length: their audio must grow with them.
CHAPTERS = [("The Harbour", SENTENCE), ("A Letter", SENTENCE * 2), ("Home", SENTENCE * 3)]
# Seconds of audio per character the demo checkpoint makes (about 0.07; its guards cap it).
SECONDS_PER_CHAR = (0.02, 0.25)


def build_epub(path: Path, chapters: list[tuple[str, str]] = CHAPTERS) -> bytes:
    book = epub.EpubBook()
    book.set_identifier("jobs-e2e")
    book.set_title("The Jobs Book")
    book.set_language("en")
    items = []
    for i, (title, text) in enumerate(chapters):
        item = epub.EpubHtml(title=title, file_name=f"chap_{i + 1}.xhtml", lang="en")
        item.content = f"<html><body><h1>{title}</h1><p>{text}</p></body></html>"
        book.add_item(item)
        items.append(item)
    book.toc = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    epub.write_epub(str(path), book)
    return path.read_bytes()


def job_env(root: Path, lease_s: str = "30") -> dict[str, str]:
    return {
        "TTS_AUTH_ENABLED": "true",
        "TTS_API_KEYS": f"{KEY_A},{KEY_B}",
        "TTS_JOBS_DIR": str(root / "jobs"),
        "TTS_REQUEST_LOG_SPOOL_DIR": str(root / "spool"),
        "TTS_JOBS_LEASE_S": lease_s,
        "TTS_LOG_JSON": "true",
    }


@pytest.fixture(scope="module")
def jobs_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("jobs")
    running = start_server(demo_model_dir, root / "server.log", job_env(root))
    yield running
    stop_server(running)


def submit(base_url: str, files: dict | None = None, data: dict | None = None, json_body: dict | None = None):
    return httpx.post(
        f"{base_url}/v1/tts/jobs", headers=A, files=files, data=data, json=json_body, timeout=30
    )


def wait_for(base_url: str, job_id: str, predicate, timeout_s: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout_s
    job: dict = {}
    while time.monotonic() < deadline:
        try:
            job = httpx.get(f"{base_url}/v1/tts/jobs/{job_id}", headers=A, timeout=10).json()
            if predicate(job):
                return job
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"job never matched in {timeout_s} s: {job}")


def wav_seconds(data: bytes, tmp_path: Path) -> float:
    path = tmp_path / "chapter.wav"
    path.write_bytes(data)
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def log_events(log: str, event: str) -> list[dict]:
    found = []
    for line in log.splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event and record.get("transport") == "job":
            found.append(record)
    return found


def test_an_epub_becomes_chapter_files_and_a_chaptered_book(
    jobs_server: RunningServer, tmp_path: Path
) -> None:
    base = jobs_server.base_url
    epub_bytes = build_epub(tmp_path / "book.epub")
    response = submit(
        base,
        files={"file": ("book.epub", epub_bytes, "application/epub+zip")},
        data={"format": "wav", "book_format": "m4b"},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["title"] == "The Jobs Book"
    assert job["progress"]["eta_seconds"] > 0  # an estimate from the submission on, before any chapter
    assert [c["title"] for c in job["chapters"]] == [title for title, _ in CHAPTERS]
    job_id = job["id"]

    # Another key: the job does not exist for it.
    for method, path in [("GET", ""), ("GET", "/events"), ("GET", "/chapters/1"), ("DELETE", "")]:
        other = httpx.request(method, f"{base}/v1/tts/jobs/{job_id}{path}", headers=B, timeout=10)
        assert other.status_code == 404, (method, path, other.text)
        assert other.json()["error"]["code"] == "NOT_FOUND"
    assert httpx.get(f"{base}/v1/tts/jobs", headers=B, timeout=10).json()["jobs"] == []

    events: list[tuple[str, dict]] = []
    with httpx.stream("GET", f"{base}/v1/tts/jobs/{job_id}/events", headers=A, timeout=300) as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event is not None:
                events.append((event, json.loads(line[6:])))
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("done") == 1, names
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert len(progress) >= 2  # the job was seen moving, not only finished
    assert all(p["eta_seconds"] is not None for p in progress)  # the first chapter's included
    assert (
        progress[-1]["chapters_done"] == 3
        and progress[-1]["characters_done"] == progress[-1]["characters_total"]
    )
    done = events[-1][1]
    assert done["progress"]["eta_seconds"] == 0.0 and done["book_url"] == f"/v1/tts/jobs/{job_id}/book"

    seconds = []
    for chapter in done["chapters"]:
        audio = httpx.get(f"{base}{chapter['url']}", headers=A, timeout=30)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        length = wav_seconds(audio.content, tmp_path)
        assert length == pytest.approx(chapter["audio_seconds"], abs=0.01)
        low, high = SECONDS_PER_CHAR
        assert low * chapter["characters"] < length < high * chapter["characters"], chapter
        seconds.append(length)
    assert seconds[0] < seconds[2]  # a three times longer chapter speaks longer

    book = httpx.get(f"{base}/v1/tts/jobs/{job_id}/book", headers=A, timeout=30)
    assert book.status_code == 200 and book.headers["content-type"] == "audio/mp4"
    (tmp_path / "book.m4b").write_bytes(book.content)
    marks = MP4(tmp_path / "book.m4b").chapters
    assert marks is not None and [m.title for m in marks] == [title for title, _ in CHAPTERS]
    assert [job["id"] for job in httpx.get(f"{base}/v1/tts/jobs", headers=A, timeout=10).json()["jobs"]][
        0
    ] == job_id


def test_bad_documents_and_options_are_refused(jobs_server: RunningServer) -> None:
    base = jobs_server.base_url
    broken = submit(base, files={"file": ("book.epub", b"not a zip", "application/epub+zip")})
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "VALIDATION_ERROR"
    wrong = submit(base, json_body={"text": "Hello.", "format": "ogg"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "INVALID_FORMAT"
    unknown = submit(base, json_body={"text": "Hello.", "voice": "nobody"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "INVALID_SPEAKER"
    assert httpx.post(f"{base}/v1/tts/jobs", json={"text": "Hello."}, timeout=10).status_code == 401


def test_delete_cancels_and_finished_chapters_stay(jobs_server: RunningServer) -> None:
    base = jobs_server.base_url
    text = "".join(f"# Part {i}\n\n{SENTENCE * 3}\n\n" for i in range(1, 7))
    job = submit(base, json_body={"text": text, "input_format": "markdown", "book_format": None}).json()
    job_id = job["id"]
    wait_for(base, job_id, lambda j: j["progress"]["chapters_done"] >= 1)
    cancelled = httpx.delete(f"{base}/v1/tts/jobs/{job_id}", headers=A, timeout=10)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    time.sleep(3)
    final = httpx.get(f"{base}/v1/tts/jobs/{job_id}", headers=A, timeout=10).json()
    assert final["status"] == "cancelled"
    assert not any(c["status"] == "running" for c in final["chapters"])  # the running chapter stopped
    done = [c for c in final["chapters"] if c["status"] == "done"]
    assert 1 <= len(done) < 6
    first = httpx.get(f"{base}{done[0]['url']}", headers=A, timeout=30)
    assert first.status_code == 200 and first.headers["content-type"] == "audio/mpeg"
    assert final["book_url"] is None


def test_a_job_resumes_after_its_server_is_killed_mid_chapter(demo_model_dir: Path, tmp_path: Path) -> None:
    env = job_env(tmp_path, lease_s="3")
    server = start_server(demo_model_dir, tmp_path / "first.log", env)
    try:
        text = f"# One\n\n{SENTENCE}\n\n# Two\n\n{SENTENCE * 6}\n\n# Three\n\n{SENTENCE}\n"
        job = submit(
            server.base_url, json_body={"text": text, "input_format": "markdown", "format": "wav"}
        ).json()
        job_id = job["id"]
        # Progress moves within the chapter: its audio seconds so far, stored at each heartbeat.
        moving = wait_for(
            server.base_url,
            job_id,
            lambda j: (
                j["chapters"][1]["status"] == "running" and (j["chapters"][1]["audio_seconds"] or 0) > 0
            ),
        )
        assert (
            moving["progress"]["chapter"]["index"] == 2 and moving["progress"]["chapter"]["audio_seconds"] > 0
        )
        first_wav = tmp_path / "jobs" / job_id / "chapter-001.wav"
        before = (first_wav.stat().st_mtime_ns, first_wav.read_bytes())
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
    finally:
        if server.process.poll() is None:
            stop_server(server)
    # What the store says while no process is left: the job is stalled (its worker died), not running.
    store = SqliteJobStore(tmp_path / "jobs" / "jobs.sqlite3")
    stalled = job_view(asyncio.run(store.get(job_id, None)), now=time.time() + 5)
    asyncio.run(store.close())
    assert stalled["status"] == "stalled" and stalled["stalled"]["retry_at"], stalled
    again = start_server(demo_model_dir, tmp_path / "second.log", env)
    try:
        final = wait_for(again.base_url, job_id, lambda j: j["status"] in ("done", "failed"))
        assert final["status"] == "done", final
        assert (first_wav.stat().st_mtime_ns, first_wav.read_bytes()) == before  # chapter 1 untouched
        assert final["book_url"] is not None
    finally:
        stop_server(again)
    first_log = (tmp_path / "first.log").read_text(errors="replace")
    second_log = (tmp_path / "second.log").read_text(errors="replace")
    # Each chapter rendered to completion, and so charged, once: chapter 1 by the first server, 2 and 3 by the second
    # (chapter 2's cut rendering on the first server was never completed: its intent record settles as refunded).
    assert [r["chapter"] for r in log_events(first_log, "request_received")] in ([1], [1, 2])
    assert len(log_events(first_log, "request_completed")) == 1
    assert [r["chapter"] for r in log_events(second_log, "request_received")] == [2, 3]
    assert len(log_events(second_log, "request_completed")) == 2
