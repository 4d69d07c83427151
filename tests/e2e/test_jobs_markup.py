"""Jobs with the markup the text routes read, and jobs that stop and go on, against a real server (uvicorn in a thread
of this process, so the test can top a key up and read the request log): a two-voice Markdown book (`[voice:NAME]`
segments) is one job whose chapter files are each one continuous piece, an SSML `<break>` is silence in its chapter,
a job's `lexicon` changes the words spoken (each chapter is charged its normalised text), a job the key's balance
cannot pay for is refused at submission, a key that runs out of credits meanwhile fails
its job and `resume` finishes it after a top-up without charging a finished chapter again, and DELETE on an ended
job removes it and its files."""

from __future__ import annotations

import json
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from api.app import create_app
from services.access import AccessServices
from services.keys.records import hash_key
from services.usage.request_log import RequestRecord, build_request_logger
from shared.settings import Settings
from tests.e2e.conftest import in_process_server

pytestmark = pytest.mark.e2e

RICH, POOR = "jobs-markup-rich-0123456789", "jobs-markup-poor-0123456789"
SENTENCE = "The boats came in at dawn and nobody was waiting on the quay. "
# Enough for a short first chapter, not for the long second one (1 credit = 1 normalised character).
POOR_BALANCE = 150
LEXICON = [{"text": "HMS", "alias": "His Majesty's Ship"}]


class RecordingSink:
    """The request log's sink, kept in memory: each chapter's record and its charge."""

    name = "memory"

    def __init__(self) -> None:
        self.rows: dict[str, RequestRecord] = {}

    async def write(self, records) -> None:
        self.rows.update((r.request_id, r) for r in records)

    async def close(self) -> None:
        return None


@dataclass
class Live:
    app: FastAPI
    base_url: str
    sink: RecordingSink
    jobs_dir: Path

    def chapter_records(self, job_id: str, status: str = "completed") -> list[RequestRecord]:
        prefix = f"job-{job_id}-"
        return [r for r in self.sink.rows.values() if r.request_id.startswith(prefix) and r.status == status]

    def top_up(self, key: str, balance: int) -> None:
        authenticator = self.app.state.services.access.authenticator
        store = authenticator.store
        current = store._by_hash[hash_key(key)]  # noqa: SLF001 - the test's in-memory key store
        store.add(replace(current, credit_balance=balance))
        authenticator.invalidate(key)  # the next request reads the new balance


@pytest.fixture(scope="module")
def live(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("jobs-markup")
    keys = root / "keys.json"
    records = [
        {"key_id": "rich", "key_hash": hash_key(RICH), "credit_balance": 1_000_000},
        {"key_id": "poor", "key_hash": hash_key(POOR), "credit_balance": POOR_BALANCE},
    ]
    keys.write_text(json.dumps({"keys": records}))
    settings = Settings(
        model_dir=demo_model_dir,
        device="cpu",
        sr_enabled=False,
        log_json=False,
        log_level="WARNING",
        auth_enabled=True,
        api_keys_file=keys,
        credits_enabled=True,
        jobs_dir=root / "jobs",
        request_log_flush_s=0.2,
    )
    sink = RecordingSink()
    access = AccessServices(settings, request_logger=build_request_logger(settings, sink=sink))
    app = create_app(settings, access=access)
    with in_process_server(app, "uvicorn-jobs-markup") as server:
        yield Live(app, server.base_url, sink, root / "jobs")


def headers(key: str = RICH) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(live: Live, body: dict, key: str = RICH) -> dict:
    answer = httpx.post(f"{live.base_url}/v1/tts/jobs", headers=headers(key), json=body, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()


def wait_for(
    live: Live, job_id: str, statuses: tuple[str, ...], key: str = RICH, timeout_s: float = 300
) -> dict:
    deadline = time.monotonic() + timeout_s
    job: dict = {}
    while time.monotonic() < deadline:
        job = httpx.get(f"{live.base_url}/v1/tts/jobs/{job_id}", headers=headers(key), timeout=10).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job never reached {statuses}: {job}")


def chapter_pcm(live: Live, chapter: dict, key: str = RICH) -> tuple[np.ndarray, int]:
    answer = httpx.get(f"{live.base_url}{chapter['url']}", headers=headers(key), timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
    path = live.jobs_dir / "download.wav"
    path.write_bytes(answer.content)
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()


def longest_silence_s(samples: np.ndarray, rate: int) -> float:
    level = np.abs(samples.astype(np.float64))
    quiet = level <= (level.max() * 1e-3 if level.size else 0)
    longest = run = 0
    for value in quiet:
        run = run + 1 if value else 0
        longest = max(longest, run)
    return longest / rate


def settled(live: Live, job_id: str, count: int, timeout_s: float = 10) -> list[RequestRecord]:
    """The job's completed chapter records, once `count` of them reached the request log."""
    deadline = time.monotonic() + timeout_s
    while len(records := live.chapter_records(job_id)) < count:
        assert time.monotonic() < deadline, f"{len(records)} of {count} chapter records"
        time.sleep(0.1)
    return records


def test_a_two_voice_book_is_one_job(live: Live) -> None:
    text = (
        "# The Quay\n\n"
        f"[voice:default] {SENTENCE} [voice:narrator] Nobody at all? [voice:default] Nobody.\n\n"
        "# The Letter\n\n"
        "[voice:narrator] A letter came the next day. [voice:default] From whom? [voice:narrator] From the sea.\n"
    )
    job = submit(live, {"text": text, "input_format": "markdown", "format": "wav", "book_format": None})
    final = wait_for(live, job["id"], ("done", "failed"))
    assert final["status"] == "done", final
    assert [c["title"] for c in final["chapters"]] == ["The Quay", "The Letter"]
    for chapter in final["chapters"]:
        samples, rate = chapter_pcm(live, chapter)
        assert len(samples) / rate == pytest.approx(chapter["audio_seconds"], abs=0.01)
        # One continuous piece: the segments are joined without a gap between the voices.
        assert longest_silence_s(samples, rate) < 0.25, chapter
    assert len(settled(live, job["id"], 2)) == 2


def test_an_ssml_break_in_a_job_is_silence(live: Live) -> None:
    text = '<speak>The boats came in at dawn. <break time="1s"/> Nobody was waiting.</speak>'
    job = submit(live, {"text": text, "format": "wav", "book_format": None})
    final = wait_for(live, job["id"], ("done", "failed"))
    assert final["status"] == "done", final
    samples, rate = chapter_pcm(live, final["chapters"][0])
    assert longest_silence_s(samples, rate) >= 0.9


def test_a_job_lexicon_changes_the_words_spoken(live: Live) -> None:
    text = "The HMS Victory sailed at dawn."
    plain = submit(live, {"text": text, "format": "wav", "book_format": None})
    aliased = submit(
        live,
        {
            "text": text,
            "format": "wav",
            "book_format": None,
            "lexicon": LEXICON,
        },
    )
    uploaded = httpx.post(  # a file upload: the rules as JSON text in a form field
        f"{live.base_url}/v1/tts/jobs",
        headers=headers(),
        files={"file": ("ship.txt", text.encode(), "text/plain")},
        data={"format": "wav", "book_format": "null", "lexicon": json.dumps(LEXICON)},
        timeout=30,
    )
    assert uploaded.status_code == 202, uploaded.text
    for job in (plain, aliased, uploaded.json()):
        assert wait_for(live, job["id"], ("done", "failed"))["status"] == "done"
    (before,) = settled(live, plain["id"], 1)
    # Each chapter is charged its normalised text: the alias is what was spoken.
    grown = len(LEXICON[0]["alias"]) - len(LEXICON[0]["text"])
    for job in (aliased, uploaded.json()):
        (after,) = settled(live, job["id"], 1)
        assert after.credits_charged - before.credits_charged == pytest.approx(grown, abs=3)
    unknown = httpx.post(
        f"{live.base_url}/v1/tts/jobs",
        headers=headers(),
        json={"text": text, "pronunciation_dictionary_locators": [{"pronunciation_dictionary_id": "nope"}]},
        timeout=30,
    )
    assert unknown.status_code in (400, 404), unknown.text  # refused before anything is stored
    assert unknown.json()["error"]["param"] == "pronunciation_dictionary_locators"


def test_a_job_out_of_credits_resumes_after_a_top_up(live: Live) -> None:
    text = f"# One\n\nThe boats.\n\n# Two\n\n{SENTENCE * 4}\n\n# Three\n\nThe quay.\n"
    # A job the balance cannot pay for is refused at submission; one it could pay for when submitted fails where
    # the balance runs out (spent elsewhere meanwhile), and resumes after a top-up.
    refused = httpx.post(
        f"{live.base_url}/v1/tts/jobs",
        headers=headers(POOR),
        json={"text": text, "input_format": "markdown", "format": "wav"},
        timeout=30,
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    live.top_up(POOR, 100_000)
    job = submit(live, {"text": text, "input_format": "markdown", "format": "wav"}, key=POOR)
    live.top_up(POOR, POOR_BALANCE)  # spent elsewhere: chapter 2 is more than is left
    job_id = job["id"]
    failed = wait_for(live, job_id, ("done", "failed"), key=POOR)
    assert failed["status"] == "failed" and failed["error"]["code"] == "INSUFFICIENT_CREDITS", failed
    assert [c["status"] for c in failed["chapters"]] == ["done", "failed", "pending"]
    first_wav = live.jobs_dir / job_id / "chapter-001.wav"
    before = first_wav.read_bytes()

    # Another key's job is not there at all.
    other = httpx.post(f"{live.base_url}/v1/tts/jobs/{job_id}/resume", headers=headers(RICH), timeout=10)
    assert other.status_code == 404
    live.top_up(POOR, 100_000)
    resumed = httpx.post(f"{live.base_url}/v1/tts/jobs/{job_id}/resume", headers=headers(POOR), timeout=10)
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["status"] == "queued" and resumed.json()["error"] is None
    final = wait_for(live, job_id, ("done", "failed"), key=POOR)
    assert final["status"] == "done", final
    assert final["book_url"] is not None and first_wav.read_bytes() == before
    again = httpx.post(f"{live.base_url}/v1/tts/jobs/{job_id}/resume", headers=headers(POOR), timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "JOB_NOT_RESUMABLE"
    # Each chapter rendered to completion, and charged, once: chapter 1 before the top-up, 2 and 3 after.
    records = settled(live, job_id, 3)
    chapters = sorted(int(r.request_id.split("-")[-2]) for r in records)
    assert chapters == [1, 2, 3]
    assert all(r.credits_charged > 0 for r in records)


def test_delete_removes_an_ended_job_and_its_files(live: Live) -> None:
    job = submit(live, {"text": "The boats came in.", "format": "wav", "book_format": None})
    job_id = job["id"]
    assert wait_for(live, job_id, ("done", "failed"))["status"] == "done"
    folder = live.jobs_dir / job_id
    assert folder.exists()
    assert (
        httpx.delete(f"{live.base_url}/v1/tts/jobs/{job_id}", headers=headers(POOR), timeout=10).status_code
        == 404
    )
    removed = httpx.delete(f"{live.base_url}/v1/tts/jobs/{job_id}", headers=headers(), timeout=10)
    assert removed.status_code == 204
    assert (
        httpx.get(f"{live.base_url}/v1/tts/jobs/{job_id}", headers=headers(), timeout=10).status_code == 404
    )
    assert not folder.exists()
