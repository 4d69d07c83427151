"""Load shedding (issue 27 item 8): while the oldest admitted request has waited past TTS_SHED_FIRST_AUDIO_S for its
first audio, new work gets 503 SERVER_OVERLOADED with Retry-After on HTTP and an error event on the WebSocket; once
the backlog speaks, requests are served again. The backlog's clock is a test clock: no sleeps, no timings.
Admission (issue 38): a new stream the codec scheduler's headroom refuses gets the same 503 and error event."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.codec.admission import AdmissionDecision
from services.deployment.runtime import ModelRuntime
from services.pipeline.load_shed import BACKLOG, FirstAudioBacklog
from shared.settings import Settings
from tests.conftest import wait_in_portal

BODY = {"text": "Hello.", "speaker": "fixed", "format": "pcm", "max_tokens": 30}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(BACKLOG, "clock", clock)
    return clock


@pytest.fixture(scope="module")
def client(demo_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=demo_model_dir, auth_enabled=False, warmup=False, log_json=False, sr_enabled=False,
                        shed_first_audio_s=5.0, admission="on")
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        RUNTIMES.append(runtime)
        yield test_client


RUNTIMES: list[ModelRuntime] = []  # the client's runtime, for the admission test


def test_the_backlog_counts_only_requests_waiting_for_first_audio() -> None:
    clock = Clock()
    backlog = FirstAudioBacklog(clock)
    first, second = object(), object()
    backlog.enter(first)
    clock.now += 3
    backlog.enter(second)
    clock.now += 3
    assert backlog.oldest_wait_s() == 6.0
    backlog.check(10.0)  # under the bound: admitted
    backlog.check(0.0)  # 0: shedding off
    backlog.leave(first)  # first audio
    assert backlog.oldest_wait_s() == 3.0 and len(backlog) == 1
    backlog.leave(second)
    assert backlog.oldest_wait_s() == 0.0 and len(backlog) == 0


def test_http_and_websocket_shed_while_the_backlog_is_past_the_bound(client: TestClient, clock: Clock) -> None:
    assert client.post("/v1/tts/generate", json=BODY).status_code == 200  # nothing waiting: served
    assert len(BACKLOG) == 0  # the request left the backlog at its first audio

    stuck = object()  # an admitted request that has not spoken yet
    BACKLOG.enter(stuck)
    try:
        clock.now += 4.0
        assert client.post("/v1/tts/generate", json=BODY).status_code == 200  # within the bound
        clock.now += 2.0
        refused = client.post("/v1/tts/generate", json=BODY)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "SERVER_OVERLOADED"
        assert int(refused.headers["Retry-After"]) >= 1
        ws_context = client.websocket_connect("/v1/tts/ws")
        ws = ws_context.__enter__()
        ws.send_text(json.dumps(BODY))  # one-shot
        event = json.loads(ws.receive_text())
        assert event["type"] == "error" and event["error"]["code"] == "SERVER_OVERLOADED"
        # Leaving the TestClient's socket once seen a CancelledError from its portal in a loaded full-suite run
        # (never alone); what is tested here is the refusal above, so the close may end either way.
        with contextlib.suppress(concurrent.futures.CancelledError):
            ws_context.__exit__(None, None, None)
    finally:
        BACKLOG.leave(stuck)
    assert client.post("/v1/tts/generate", json=BODY).status_code == 200  # the backlog spoke: served again


def test_a_stream_admission_refuses_gets_503_with_retry_after_and_the_socket_an_error_event(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    (runtime,) = RUNTIMES
    assert runtime.admission is not None and runtime.admission.scheduler is runtime.codec_scheduler
    monkeypatch.setattr(runtime.admission, "admit", _refusing("no codec headroom", 4))
    refused = client.post("/v1/tts/generate", json=BODY)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "SERVER_OVERLOADED" and "no codec headroom" in refused.text
    assert refused.headers["Retry-After"] == "4"
    ws_context = client.websocket_connect("/v1/tts/ws")
    ws = ws_context.__enter__()
    ws.send_text(json.dumps(BODY))
    event = json.loads(ws.receive_text())
    assert event["type"] == "error" and event["error"]["code"] == "SERVER_OVERLOADED"
    with contextlib.suppress(concurrent.futures.CancelledError):
        ws_context.__exit__(None, None, None)
    monkeypatch.undo()
    assert client.post("/v1/tts/generate", json=BODY).status_code == 200  # admitted again


def test_admission_sees_a_finished_request_leave_the_engine(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Admission integrates its count of generating requests between its own calls, so a request leaving the engine
    must be seen leaving: else an idle spell after it reads as a request generating no tokens, and the next stream
    that comes while another is starting is refused as overloaded (Pipecat's reply queued right after a turn was,
    on the device stand-in). A test clock: no sleeps."""
    runtime = RUNTIMES[0]
    admission = runtime.admission
    assert admission is not None
    clock = Clock()
    clock.now = time.monotonic() + 1000.0  # past what the earlier tests measured on the real clock
    monkeypatch.setattr(admission, "clock", clock)
    # A request counts as generating from its stream's start to its end, as vLLM's (and the stand-in's) do; the
    # demo engine drops it as soon as its thread is done, before its last tokens are read.
    live = [0]
    inner = runtime.engine.stream

    async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[list[int]]:
        live[0] += 1
        try:
            async for ids in inner(*args, **kwargs):
                yield ids
        finally:
            live[0] -= 1

    monkeypatch.setattr(runtime.engine, "stream", stream)
    monkeypatch.setattr(admission, "generating", lambda: live[0])
    assert client.post("/v1/tts/generate", json=BODY).status_code == 200  # generated, noted, left the engine
    assert live[0] == 0
    clock.now += 100.0  # an idle spell
    live[0] = 1  # a new request has just begun
    assert admission.pace() is None  # nothing measured in the last window, not "0 tokens/s"


EL_PATH = "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000"


def _refusing(reason: str, retry_after_s: int) -> Any:
    """`Admission.admit` refusing every stream (what every transport asks)."""
    async def admit(max_wait_s: float | None = None) -> AdmissionDecision:
        return AdmissionDecision(False, reason, retry_after_s, "codec_cost")
    return admit


def _say(ws: Any, context_id: str, text: str) -> None:
    """One reply as Pipecat sends it: the opener, the text, flush, close_context (isFinal ends it)."""
    for message in ({"text": " ", "context_id": context_id}, {"text": text, "context_id": context_id},
                    {"context_id": context_id, "flush": True}, {"context_id": context_id, "close_context": True}):
        ws.send_text(json.dumps(message))


def _el_until_final(ws: Any, context_id: str) -> list[dict]:
    """The context's messages up to its isFinal (a refused context: its error, then isFinal, as Pipecat expects)."""
    messages = []
    while True:
        message = json.loads(ws.receive_text())
        messages.append(message)
        if message.get("isFinal") is True and message.get("contextId") == context_id:
            return messages


def test_an_elevenlabs_socket_is_admitted_per_context_not_at_connect(client: TestClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipecat and LiveKit open the ElevenLabs socket when the call starts, long before the first reply. Its check
    of the voice at connect starts no stream: admission neither counts it (the ramp lets in 32 a second: each agent
    counted twice halved a burst) nor refuses the connection; each context is admitted once, and while admission
    refuses, a context gets the dialect's own error and the socket stays open for the next."""
    (runtime,) = RUNTIMES
    admission = runtime.admission
    assert admission is not None
    before = admission.admitted
    with client.websocket_connect(EL_PATH) as ws:
        assert admission.admitted == before  # connected: nothing admitted yet
        _say(ws, "a", "Hello there.")
        messages = _el_until_final(ws, "a")
        assert any(m.get("audio") for m in messages), messages[-3:]
        assert not any(m.get("error") for m in messages), [m for m in messages if m.get("error")]
        assert admission.admitted == before + 1  # one context, one admission
        monkeypatch.setattr(admission, "admit", _refusing("no codec headroom", 2))
        _say(ws, "b", "Hello again.")
        refused = _el_until_final(ws, "b")
        assert refused[0]["code"] == "SERVER_OVERLOADED" and refused[0]["contextId"] == "b"
        monkeypatch.undo()
        _say(ws, "c", "And once more.")
        again = _el_until_final(ws, "c")
        assert any(m.get("audio") for m in again), again  # the same socket: admitted again
    monkeypatch.setattr(admission, "admit", _refusing("no codec headroom", 2))
    with client.websocket_connect(EL_PATH) as ws:  # connecting while admission refuses: accepted
        ws.send_text(json.dumps({"text": " ", "context_id": "d"}))  # a context opens with Pipecat's opener
        assert _el_until_final(ws, "d")[0]["code"] == "SERVER_OVERLOADED"  # (read all: Starlette's test client
        # waits at exit while server messages are unread)
