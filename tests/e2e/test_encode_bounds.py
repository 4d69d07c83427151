"""Encoding is bounded and fair against a real uvicorn server: a client that hangs up while its
reference waits for the encoder or is encoded gives its slot back at once, and a deadline bounds each encode, so
one key's endless upload cannot hold another key's voice creation.

uvicorn runs in-process (as in test_disconnect.py) so the test can hold the model call: the encoder is the one
boundary replaced, by one that holds chosen calls until released and, like the real one between its stages, gives
up when told to stop. Everything else (routes, auth, decoding, the queue, the socket hang-up) is real."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from core.clone import EncodeAbandoned
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.audio_samples import voiced, wav_bytes
from tests.e2e.conftest import in_process_server
from tests.unit.services.voice_library.test_voice_library import fake_tokens

pytestmark = pytest.mark.e2e

HOSTILE, OTHER, THIRD = "encode-key-a", "encode-key-b", "encode-key-c"


class HoldingEncoder:
    """Holds every call whose reference is `hold_seconds` long (the hostile uploads); others encode at once."""

    hold_seconds = 4.0

    def __init__(self) -> None:
        self.release = threading.Event()
        self.held = 0
        self.stopped = 0

    def __call__(self, samples, *, semantic: bool = True, stop=None):
        if abs(len(samples) / 16_000 - self.hold_seconds) < 0.01:
            self.held += 1
            while not self.release.wait(timeout=0.01):
                if stop is not None and stop.is_set():
                    self.stopped += 1
                    raise EncodeAbandoned("stopped between stages")
        return fake_tokens(samples, semantic)


@dataclass
class LiveServer:
    app: FastAPI
    base_url: str
    port: int
    encoder: HoldingEncoder

    @property
    def references(self):
        return self.app.state.services.library.references


@pytest.fixture(scope="module")
def live(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # One encode at a time; the wait limit far beyond any test, so only a deadline or a hang-up can end a wait.
    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        auth_enabled=True,
        api_keys=f"{HOSTILE},{OTHER},{THIRD}",
        device="cpu",
        sr_enabled=False,
        log_json=False,
        log_level="WARNING",
        voice_dir=tmp_path_factory.mktemp("voices"),
        rate_limit_per_minute=10_000,
        clone_max_concurrent_encodes=1,
        clone_max_waiting_encodes=1,
        clone_encode_wait_s=600,
        clone_encode_deadline_s=600,
        default_max_tokens=30,
    )
    runtime = ModelRuntime(settings)
    encoder = HoldingEncoder()
    runtime.encode_reference = encoder  # type: ignore[method-assign]
    app = create_app(settings, runtime=runtime)
    with in_process_server(app, "uvicorn-encode-bounds") as served:
        try:
            yield LiveServer(app, served.base_url, served.port, encoder)
        finally:
            encoder.release.set()  # held encodes end before the server is told to stop


def recording(seed: int, seconds: float = 2.0) -> bytes:
    return wav_bytes(voiced(seconds, seed=seed))


def hostile_recording(seed: int) -> bytes:
    return recording(seed, HoldingEncoder.hold_seconds)


def create_voice(live: LiveServer, key: str, audio: bytes, name: str = "voice") -> httpx.Response:
    # The read timeout is the test's own bound: without the fixes these calls wait for the held encoder.
    return httpx.post(
        f"{live.base_url}/v1/audio/voices",
        headers={"Authorization": f"Bearer {key}"},
        files={"audio_sample": ("ref.wav", audio, "audio/wav")},
        data={"name": name},
        timeout=30,
    )


def until(predicate, what: str) -> None:
    for _ in range(2000):
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"not reached: {what}")


def raw_request(live: LiveServer, path: str, key: str, body: bytes, content_type: str) -> socket.socket:
    """Send a whole request on a socket the caller closes (a client that hangs up without reading the answer)."""
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=30)
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    return sock


def multipart(audio: bytes) -> tuple[bytes, str]:
    boundary = "encodeboundsx"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nhostile\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="audio_sample"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("route", ["voices", "generate"])
def test_a_client_that_hangs_up_frees_its_encoder_slot(live: LiveServer, route: str) -> None:
    """Key A's endless encode (a voice upload or a per-request reference) holds the only encoder slot; A hangs up;
    key C's voice creation gets the slot at once (before, A kept it until its encode ended, however long)."""
    seed = 100 if route == "voices" else 200
    if route == "voices":
        body, content_type = multipart(hostile_recording(seed))
        sock = raw_request(live, "/v1/audio/voices", HOSTILE, body, content_type)
    else:
        body = json.dumps(
            {
                "text": "Good morning.",
                "reference_audio": base64.b64encode(hostile_recording(seed)).decode(),
                "max_tokens": 30,
            }
        ).encode()
        sock = raw_request(live, "/v1/tts/generate", HOSTILE, body, "application/json")
    held, stopped = live.encoder.held, live.encoder.stopped
    until(lambda: live.encoder.held == held + 1, "the hostile encode is running")
    sock.close()  # hang up
    created = create_voice(live, THIRD, recording(seed + 1))
    assert created.status_code == 201, created.text
    until(lambda: live.encoder.stopped == stopped + 1, "the abandoned encode stopped")
    # The hostile key's place came back with its stopped thread: it may encode again.
    assert create_voice(live, HOSTILE, recording(seed + 2)).status_code == 201


def test_a_deadline_bounds_each_encode_so_a_hostile_upload_cannot_hold_another_key(live: LiveServer) -> None:
    """Key A's encode never ends and key B queues behind it: at A's deadline A gets 504 with Retry-After, the slot
    goes to B, and B's voice is created (before, B waited as long as A's encode ran).

    Only A runs under the short deadline: each call reads it as it enters, and B's own 1.5 s would leave it just
    the moments between the two arrivals to encode once A's slot came back (a loaded CI machine took longer)."""
    live.references.deadline_s = 1.5
    try:
        outcome: dict[str, httpx.Response] = {}
        hostile = threading.Thread(
            target=lambda: outcome.update(a=create_voice(live, HOSTILE, hostile_recording(300)))
        )
        held = live.encoder.held
        hostile.start()
        until(lambda: live.encoder.held == held + 1, "the hostile encode is running")
        live.references.deadline_s = 600  # B's bound: only A's deadline can end A's hold on the slot
        other = create_voice(live, OTHER, recording(301))
        hostile.join(timeout=30)
    finally:
        live.references.deadline_s = 600
    assert other.status_code == 201, other.text
    cut = outcome["a"]
    assert cut.status_code == 504 and cut.json()["error"]["code"] == "GENERATION_TIMEOUT"
    assert cut.headers["retry-after"] == "10"


def test_a_deadline_in_the_queue_answers_503_with_retry_after(live: LiveServer) -> None:
    """A caller still waiting for the encoder when its deadline passes gets 503 SERVICE_UNAVAILABLE with
    Retry-After (the wait limit, 600 s here, would have kept it)."""
    outcome: dict[str, httpx.Response] = {}
    hostile = threading.Thread(
        target=lambda: outcome.update(a=create_voice(live, HOSTILE, hostile_recording(400)))
    )
    held = live.encoder.held
    hostile.start()
    until(lambda: live.encoder.held == held + 1, "the hostile encode is running")
    live.references.deadline_s = 1.0  # from now on: the waiter's bound; the running encode keeps 600 s
    try:
        waiting = create_voice(live, OTHER, recording(401))
    finally:
        live.references.deadline_s = 600
        live.encoder.release.set()  # let the hostile encode finish
        hostile.join(timeout=30)
        live.encoder.release.clear()
    assert waiting.status_code == 503, waiting.text
    assert waiting.json()["error"]["code"] == "SERVICE_UNAVAILABLE" and waiting.headers["retry-after"] == "10"
    assert outcome["a"].status_code == 201


def test_the_per_key_and_queue_limits_answer_429_and_503_with_retry_after(live: LiveServer) -> None:
    """Over HTTP, before any decode: a key's second encode while its first runs gets 429, and a caller finding the
    queue (1 here) full gets 503, both with Retry-After in the error envelope."""
    outcome: dict[str, httpx.Response] = {}
    hostile = threading.Thread(
        target=lambda: outcome.update(a=create_voice(live, HOSTILE, hostile_recording(500)))
    )
    queued = threading.Thread(target=lambda: outcome.update(b=create_voice(live, OTHER, recording(501))))
    held = live.encoder.held
    hostile.start()
    until(lambda: live.encoder.held == held + 1, "the hostile encode is running")
    queued.start()
    until(lambda: live.references._waiting == 1, "B waits for the encoder")  # noqa: SLF001
    try:
        again = create_voice(live, HOSTILE, recording(502))
        full = create_voice(live, THIRD, recording(503))
    finally:
        live.encoder.release.set()
        hostile.join(timeout=30)
        queued.join(timeout=30)
        live.encoder.release.clear()
    assert (again.status_code, again.json()["error"]["code"]) == (429, "TOO_MANY_CONCURRENT_REQUESTS")
    assert (full.status_code, full.json()["error"]["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert again.headers["retry-after"] == "5" and full.headers["retry-after"] == "10"
    assert outcome["a"].status_code == 201 and outcome["b"].status_code == 201
