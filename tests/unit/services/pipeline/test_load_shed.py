"""Load shedding: while the oldest admitted request has waited past TTS_SHED_FIRST_AUDIO_S for its
first audio, new work gets 503 SERVER_OVERLOADED with Retry-After on HTTP and an error event on the WebSocket; once
the backlog speaks, requests are served again. The backlog's clock is a test clock: no sleeps, no timings.
Admission: a new stream the codec scheduler's headroom refuses gets the same 503 and error event."""

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
from api.protocols.cartesia.requests import ends_context as cartesia_ends
from api.protocols.elevenlabs.requests import ends_context as elevenlabs_ends
from services.deployment.runtime import ModelRuntime
from services.device.admission import AdmissionDecision
from services.pipeline.load_shed import BACKLOG, FirstAudioBacklog
from services.sessions.refused_contexts import RefusedContexts
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
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        shed_first_audio_s=5.0,
        admission="on",
        admission_continue_ms=0,  # every stream asks: the refusals here follow earlier streams of the same key
    )
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


def test_http_and_websocket_shed_while_the_backlog_is_past_the_bound(
    client: TestClient, clock: Clock
) -> None:
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
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
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


def test_admission_sees_a_finished_request_leave_the_engine(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
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

    async def admit(
        max_wait_s: float | None = None, key: str | None = None, *, super_resolved: bool = True
    ) -> AdmissionDecision:
        return AdmissionDecision(False, reason, retry_after_s, "codec_cost")

    return admit


def _say(ws: Any, context_id: str, text: str) -> None:
    """One reply as Pipecat sends it: the opener, the text, flush, close_context (isFinal ends it)."""
    for message in (
        {"text": " ", "context_id": context_id},
        {"text": text, "context_id": context_id},
        {"context_id": context_id, "flush": True},
        {"context_id": context_id, "close_context": True},
    ):
        ws.send_text(json.dumps(message))


def _until_end(ws: Any, context_id: str, *, end: str = "isFinal", id_key: str = "contextId") -> list[dict]:
    """The socket's messages up to the context's end (ElevenLabs: `isFinal`, also after a refused context's error,
    as Pipecat expects; Cartesia: `done`, or an `error`, which says `done: false` but ends the context for Pipecat
    and Cartesia's SDK, which read its `type`)."""
    messages = []
    while True:
        message = json.loads(ws.receive_text())
        messages.append(message)
        if message.get(id_key) == context_id and (message.get(end) is True or message.get("type") == "error"):
            return messages


def _el_until_final(ws: Any, context_id: str) -> list[dict]:
    return _until_end(ws, context_id)


def _cartesia_until_done(ws: Any, context_id: str) -> list[dict]:
    return _until_end(ws, context_id, end="done", id_key="context_id")


def test_an_elevenlabs_socket_is_admitted_per_context_not_at_connect(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipecat and LiveKit open the ElevenLabs socket when the call starts, long before the first reply. Its check
    of the voice at connect starts no stream: admission neither counts it (the ramp lets in 32 a second: each agent
    counted twice halved a burst) nor refuses the connection; each context is admitted once, and while admission
    refuses, a context gets the dialect's own error and the socket stays open for the next.

    The first context meets the real admission, once the scheduler remembers no missed deadline (an earlier test's
    stream on a loaded CI machine can leave one, and a miss refuses for `busy_window_s`); the next two meet one that
    refuses once, then admits, so what they show does not hang on this machine's load."""
    (runtime,) = RUNTIMES
    admission = runtime.admission
    scheduler = runtime.codec_scheduler
    assert admission is not None and scheduler is not None
    wait_in_portal(client, lambda: not scheduler.recent_misses(admission.miss_grace_s), timeout_s=10)
    before = admission.admitted
    with client.websocket_connect(EL_PATH) as ws:
        assert admission.admitted == before  # connected: nothing admitted yet
        _say(ws, "a", "Hello there.")
        messages = _el_until_final(ws, "a")
        assert any(m.get("audio") for m in messages), messages[-3:]
        assert not any(m.get("error") for m in messages), [m for m in messages if m.get("error")]
        assert admission.admitted == before + 1  # one context, one admission
        admit, calls = _refusing_once("no codec headroom")
        monkeypatch.setattr(admission, "admit", admit)
        _say(ws, "b", "Hello again.")
        refused = _el_until_final(ws, "b")
        assert refused[0]["code"] == "SERVER_OVERLOADED" and refused[0]["contextId"] == "b"
        _say(ws, "c", "And once more.")
        again = _el_until_final(ws, "c")
        assert any(m.get("audio") for m in again), again  # the same socket: admitted again
        assert len(calls) == 2  # each context asked once
        monkeypatch.undo()
    monkeypatch.setattr(admission, "admit", _refusing("no codec headroom", 2))
    with client.websocket_connect(EL_PATH) as ws:  # connecting while admission refuses: accepted
        ws.send_text(json.dumps({"text": " ", "context_id": "d"}))  # a context opens with Pipecat's opener
        assert (
            _el_until_final(ws, "d")[0]["code"] == "SERVER_OVERLOADED"
        )  # (read all: Starlette's test client
        # waits at exit while server messages are unread)


def _refusing_once(reason: str) -> tuple[Any, list[int]]:
    """`Admission.admit` refusing its first call and admitting every later one (admission relents part-way through a
    turn), and the count of calls."""
    calls: list[int] = []

    async def admit(
        max_wait_s: float | None = None, key: str | None = None, *, super_resolved: bool = True
    ) -> AdmissionDecision:
        calls.append(1)
        if len(calls) == 1:
            return AdmissionDecision(False, reason, 1, "ramp")
        return AdmissionDecision(True, "admitted")

    return admit, calls


CARTESIA_PATH = "/tts/websocket?cartesia_version=2026-03-01"
CARTESIA_FIELDS = {
    "model_id": "sonic-2",
    "voice": {"mode": "id", "id": "fixed"},
    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
}


@pytest.mark.parametrize("dialect", ["elevenlabs", "cartesia"])
def test_a_refused_context_answers_once_and_never_speaks_part_of_its_turn(
    client: TestClient, dialect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent keeps streaming a turn's text into its context after the refusal (Pipecat reads only isFinal; LiveKit
    sends each word as the LLM makes it). Admission is asked once for the context, the client gets one error and the
    context's end (ElevenLabs: isFinal; Cartesia: the error, `done: false` for LiveKit, and its final message gets
    `done`), and nothing of the turn is spoken even when admission would let a later word in (it would speak the
    end of the reply without its start). Closing the context forgets it: its id, and the next context, speak."""
    (runtime,) = RUNTIMES
    admission = runtime.admission
    assert admission is not None
    admit, calls = _refusing_once("ramping up")
    monkeypatch.setattr(admission, "admit", admit)
    words = ["Hello", " there,", " how", " are", " you", " today?"]
    if dialect == "elevenlabs":
        with client.websocket_connect(EL_PATH) as ws:
            for message in (
                {"text": " ", "context_id": "b"},
                *({"text": w, "context_id": "b"} for w in words),
                {"context_id": "b", "flush": True},
                {"context_id": "b", "close_context": True},
            ):
                ws.send_text(json.dumps(message))
            _say(ws, "c", "And once more.")  # the next turn, on the same socket
            messages = _el_until_final(ws, "c")
            of_b = [m for m in messages if m.get("contextId") == "b"]
            assert [
                ("error" if m.get("error") else "final" if m.get("isFinal") else "audio") for m in of_b
            ] == ["error", "final"], of_b
            assert of_b[0]["code"] == "SERVER_OVERLOADED"
            assert any(m.get("audio") for m in messages if m.get("contextId") == "c")
            assert len(calls) == 2  # b once (refused), c once
            _say(ws, "b", "The closed id speaks again.")
            assert any(m.get("audio") for m in _el_until_final(ws, "b"))
        return
    with client.websocket_connect(CARTESIA_PATH) as ws:
        for i, word in enumerate(words):
            ws.send_text(
                json.dumps(
                    {"context_id": "b", "transcript": word, "continue": i < len(words) - 1, **CARTESIA_FIELDS}
                )
            )
        ws.send_text(
            json.dumps(
                {"context_id": "c", "transcript": "And once more.", "continue": False, **CARTESIA_FIELDS}
            )
        )
        messages = _cartesia_until_done(ws, "c")
        of_b = [m for m in messages if m.get("context_id") == "b"]
        # Cartesia's error ends it (`done: false`: LiveKit raises it); its final `continue: false` gets an empty chunk
        # (Pipecat counts no silent turn) and `done`
        assert [m.get("type") for m in of_b] == ["error", "chunk", "done"] and of_b[0]["done"] is False, of_b
        assert of_b[1]["data"] == "", of_b
        assert of_b[0]["error_code"] == "server_overloaded"
        assert any(m.get("type") == "chunk" for m in messages if m.get("context_id") == "c")
        assert len(calls) == 2
        ws.send_text(
            json.dumps(
                {
                    "context_id": "b",
                    "transcript": "The ended id speaks again.",
                    "continue": False,
                    **CARTESIA_FIELDS,
                }
            )
        )
        assert any(m.get("type") == "chunk" for m in _cartesia_until_done(ws, "b"))


def test_a_connection_remembers_a_bounded_number_of_refused_contexts() -> None:
    """A client that never closes its refused contexts cannot grow the memory: the oldest is forgotten first, and a
    context remembered again becomes the newest."""
    refused = RefusedContexts(limit=3)
    for cid in ("a", "b", "c"):
        refused.remember(cid)
    refused.remember("a")
    refused.remember("d")  # "b" is now the oldest and goes
    assert [cid in refused for cid in ("a", "b", "c", "d")] == [True, False, True, True]
    refused.forget("c")
    refused.forget(None)
    assert "c" not in refused and None not in refused


@pytest.mark.parametrize("dialect", ["elevenlabs", "cartesia"])
def test_a_refused_message_that_ends_its_context_leaves_the_id_free_for_a_retry(
    client: TestClient, dialect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A context opened and ended in one message (Cartesia's `continue: false`, ElevenLabs' text with
    `close_context`) and refused has nothing more to drop: the same message sent again, as a client retrying after
    Retry-After does, is spoken (it was left unanswered when the refusal was remembered)."""
    (runtime,) = RUNTIMES
    admission = runtime.admission
    assert admission is not None
    admit, calls = _refusing_once("ramping up")
    monkeypatch.setattr(admission, "admit", admit)
    if dialect == "elevenlabs":
        one_shot = json.dumps({"text": "Hello there.", "context_id": "r", "close_context": True})
        with client.websocket_connect(EL_PATH) as ws:
            ws.send_text(one_shot)
            refused = _el_until_final(ws, "r")
            assert refused[0]["code"] == "SERVER_OVERLOADED" and not any(m.get("audio") for m in refused)
            ws.send_text(one_shot)
            assert any(m.get("audio") for m in _el_until_final(ws, "r"))
    else:
        one_shot = json.dumps(
            {"context_id": "r", "transcript": "Hello there.", "continue": False, **CARTESIA_FIELDS}
        )
        with client.websocket_connect(CARTESIA_PATH) as ws:
            ws.send_text(one_shot)
            refused = _cartesia_until_done(ws, "r")
            assert [m["type"] for m in refused] == ["error"] and refused[0][
                "error_code"
            ] == "server_overloaded"
            ws.send_text(one_shot)
            assert any(m.get("type") == "chunk" for m in _cartesia_until_done(ws, "r"))
    assert len(calls) == 2


def test_which_messages_end_their_context_by_the_raw_fields() -> None:
    """What a refusal of an unparsable message is judged by (the dialects' own defaults: Cartesia's `continue` is
    false unless sent)."""
    assert cartesia_ends({"transcript": "Hi"}) and cartesia_ends({"continue": False})
    assert cartesia_ends({"continue": True, "cancel": True}) and not cartesia_ends({"continue": True})
    assert cartesia_ends({"continue": "yes"})  # anything but true ends it
    assert elevenlabs_ends({"close_context": True}) and elevenlabs_ends({"close_socket": True})
    assert not elevenlabs_ends({"text": "Hi", "flush": True}) and not elevenlabs_ends(
        {"close_context": "true"}
    )


def test_admission_and_the_scheduler_are_told_whether_a_stream_goes_through_ap_bwe(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 0 weighs a 48 kHz stream apart from a 16 kHz one (services/device/carried.py): HTTP and a socket tell
    admission the newcomer's kind, and the stream opens on the scheduler as that kind."""
    (runtime,) = RUNTIMES
    admission, scheduler = runtime.admission, runtime.codec_scheduler
    assert admission is not None and scheduler is not None
    asked: list[bool] = []
    opened: list[bool] = []
    real_admit, real_open = admission.admit, scheduler.open_stream

    async def admit(
        max_wait_s: float | None = None, key: str | None = None, *, super_resolved: bool = True
    ) -> Any:
        asked.append(super_resolved)
        return await real_admit(max_wait_s, key, super_resolved=super_resolved)

    def open_stream(*args: Any, super_resolved: bool = False, **kwargs: Any) -> Any:
        opened.append(super_resolved)
        return real_open(*args, super_resolved=super_resolved, **kwargs)

    monkeypatch.setattr(admission, "admit", admit)
    monkeypatch.setattr(scheduler, "open_stream", open_stream)
    assert client.post("/v1/tts/generate", json=BODY).status_code == 200
    assert client.post("/v1/tts/generate", json={**BODY, "sample_rate": 48_000}).status_code == 200
    with client.websocket_connect("/v1/tts/ws") as ws:
        ws.send_text(json.dumps({**BODY, "sample_rate": 48_000}))
        while True:  # audio comes in binary frames, events in text ones
            message = ws.receive()
            if message.get("text") and json.loads(message["text"]).get("type") in ("done", "error", "end"):
                break
    assert asked == [False, True, True] and opened == [False, True, True]
