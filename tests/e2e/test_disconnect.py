"""A client that hangs up mid-stream stops the work for its request within 200 ms.

Runs uvicorn in-process (in a background thread with its own event loop) so the test can look inside the
server: the LLM engine's active requests and the asyncio tasks still alive on the server's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from shared.settings import Settings
from tests.e2e.conftest import in_process_server

pytestmark = pytest.mark.e2e

ABORT_DEADLINE_S = 0.2
LONG_TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank. Every morning the baker opens his shop at "
    "six and sells fresh bread to the villagers. Children walk to school along the narrow road, laughing and "
    "talking about their games. In the afternoon the sun warms the stone walls of the old church. Later, when "
    "evening comes, families gather for dinner and share stories about their day."
)


@dataclass
class LiveServer:
    app: FastAPI
    loop: asyncio.AbstractEventLoop
    base_url: str

    def active_requests(self) -> set[str]:
        return set(self.app.state.runtime.engine.active_requests())

    def task_names(self) -> list[str]:
        async def names() -> list[str]:
            return [task.get_name() for task in asyncio.all_tasks()]

        return asyncio.run_coroutine_threadsafe(names(), self.loop).result(timeout=5)


@pytest.fixture(scope="module")
def live(demo_model_dir: Path) -> Iterator[LiveServer]:
    # Warm-up as in production: the first request must not pay for lazy initialisation (seconds on CPU).
    settings = Settings(
        model_dir=demo_model_dir,
        warmup=True,
        auth_enabled=False,
        device="cpu",
        sr_enabled=False,
        log_json=False,
        log_level="WARNING",
    )
    app = create_app(settings)
    with in_process_server(app, "uvicorn-under-test") as served:
        yield LiveServer(app, served.loop, served.base_url)


def _leftovers(live: LiveServer, request_id: str) -> tuple[set[str], list[str]]:
    active = {r for r in live.active_requests() if r.startswith(request_id)}
    tasks = [name for name in live.task_names() if request_id in name]
    return active, tasks


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_hanging_up_after_the_first_chunk_aborts_generation(live: LiveServer, fmt: str) -> None:
    body = {"text": LONG_TEXT, "stream": True, "format": fmt, "seed": 1}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{live.base_url}/v1/tts/generate", json=body) as response:
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
            # Keep the iterator: a discarded httpx byte iterator closes the connection right away.
            pieces = response.iter_raw()
            first = next(pieces)
            assert first
            # Generation of the first text chunk is still running (the demo speaks it for ~10 s).
            active, tasks = _leftovers(live, request_id)
            assert active, "generation should still be running when the first chunk arrives"
            assert f"synth-{request_id}" in tasks
        hung_up = time.perf_counter()  # leaving the block closes the unread response: the connection drops

    while True:
        active, tasks = _leftovers(live, request_id)
        elapsed = time.perf_counter() - hung_up
        if not active and not tasks:
            break
        assert elapsed <= ABORT_DEADLINE_S, (
            f"after {elapsed * 1000:.0f} ms still active={active} tasks={tasks}"
        )
        time.sleep(0.005)


def test_server_keeps_serving_after_a_hang_up(live: LiveServer) -> None:
    response = httpx.post(
        f"{live.base_url}/v1/tts/generate", json={"text": "Still here.", "max_tokens": 10}, timeout=60
    )
    assert response.status_code == 200
    assert len(response.content) == 44 + 10 * 320 * 2
    # Reaching max_tokens aborts the engine request; its worker may take a few ms more to stop.
    deadline = time.perf_counter() + ABORT_DEADLINE_S
    while live.active_requests() and time.perf_counter() < deadline:
        time.sleep(0.005)
    assert live.active_requests() == set()


@pytest.mark.parametrize("extra", [{}, {"timestamps": "word"}], ids=["file", "json-with-timestamps"])
def test_hanging_up_on_a_non_streaming_request_stops_its_work(live: LiveServer, extra: dict) -> None:
    """The client waits 2.5 s for a complete file (or JSON answer) that takes far longer, then leaves: the work
    stops too."""
    import uuid

    request_id = f"hangup-{uuid.uuid4().hex[:8]}"
    # Three times the text: a complete answer far longer than the client waits, however fast the engine.
    body = {"text": " ".join([LONG_TEXT] * 3), "stream": False, "seed": 2, **extra}
    outcome: list[BaseException] = []

    def client() -> None:
        try:
            httpx.post(
                f"{live.base_url}/v1/tts/generate",
                json=body,
                headers={"X-Request-ID": request_id},
                timeout=2.5,
            )
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    seen = False
    while thread.is_alive():  # the server names work by its own id: any active engine request is this one
        seen = seen or bool(live.active_requests())
        time.sleep(0.02)
    thread.join()
    assert seen, "the request was never seen generating"
    assert outcome and isinstance(outcome[0], httpx.ReadTimeout)
    hung_up = time.perf_counter()
    while True:
        active = live.active_requests()
        tasks = [name for name in live.task_names() if name.startswith(("synth-", "gen-", "prefetch-"))]
        if not active and not tasks:
            break
        assert time.perf_counter() - hung_up <= 1.0, f"still active={active} tasks={tasks}"
        time.sleep(0.01)
