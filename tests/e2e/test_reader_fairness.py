"""Document readers shared fairly, through a real server: key A floods uploads of a small PDF whose outline titles
are looked for in a page of 200,000 words (its four concurrent uploads), then key B uploads a short PDF and submits
a JSON text job. B is served before A's queued uploads (a key holds at most its share of the readers, its further
reads queue behind each other, never in front of another key's), and B's JSON job never waits for a reader."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.pdf_files import minimal_pdf, word_flood

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "reader-attacker-key", "reader-other-key"
ATTACKS = 4  # the key's concurrent requests


def slow_pdf() -> bytes:
    """About 45 KB: 200,000 words on one page, 20 outline titles that match everywhere but their last word."""
    return minimal_pdf([word_flood(200_000)], [(" ".join(["a"] * 1_000) + " b", 0)] * 20)


def short_pdf() -> bytes:
    return minimal_pdf([word_flood(400)], [("One", 0)])


@pytest.fixture(scope="module")
def readers_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("readers")
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_API_KEYS": f"{KEY_A},{KEY_B}",
        "TTS_JOBS_DIR": str(root / "jobs"),
        "TTS_RATE_LIMIT_PER_MINUTE": "10000",
    }
    running = start_server(demo_model_dir, root / "server.log", env)
    yield running
    stop_server(running)


def upload(url: str, key: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/tts/jobs",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": (name, data, "application/pdf")},
        timeout=300,
    )


def test_another_keys_upload_and_json_job_go_before_a_flooders_queued_reads(
    readers_server: RunningServer,
) -> None:
    url = readers_server.base_url
    started = time.perf_counter()
    control = upload(url, KEY_B, "short.pdf", short_pdf())
    control_s = time.perf_counter() - started
    assert control.status_code == 202, control.text

    attack = slow_pdf()
    answered: list[tuple[str, float, int]] = []  # (who, when, status), in the order answered
    lock = threading.Lock()

    def send(who: str, call) -> None:
        response = call()
        with lock:
            answered.append((who, time.perf_counter(), response.status_code))

    flooders = [
        threading.Thread(target=send, args=(f"A{i}", lambda: upload(url, KEY_A, "slow.pdf", attack)))
        for i in range(ATTACKS)
    ]
    for thread in flooders:
        thread.start()
    time.sleep(1.0)  # A's four uploads are in: one reads, three queue
    begun = time.perf_counter()
    send("B upload", lambda: upload(url, KEY_B, "short.pdf", short_pdf()))
    send(
        "B json",
        lambda: httpx.post(
            f"{url}/v1/tts/jobs",
            headers={"Authorization": f"Bearer {KEY_B}"},
            json={"text": "A short job of key B."},
            timeout=300,
        ),
    )
    for thread in flooders:
        thread.join(timeout=300)
    order = [who for who, _, _ in answered]
    assert all(status == 202 for _, _, status in answered), [(w, s) for w, _, s in answered]
    # B's upload took the free reader at once: answered before A's queued uploads (all but A's one reading).
    assert order.index("B upload") <= 1 and order.index("B json") <= 2, order
    b_upload_s = next(when for who, when, _ in answered if who == "B upload") - begun
    assert b_upload_s < max(5 * control_s, 10.0), (
        b_upload_s,
        control_s,
    )  # not A's reads' 4x; loose on a busy box
