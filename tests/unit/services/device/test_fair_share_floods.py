"""A key within its share is never refused while another floods (services/device/admission.py, "Each key's share"),
against the real app on the demo checkpoint with admission on: key A holds four streams open on an ElevenLabs socket,
then the device is short (the scheduler reports a missed deadline, as A's in-limit synthesis flood made it on the
device stand-in); A's next requests are refused SERVER_OVERLOADED with Retry-After, key B is admitted on HTTP, the
native socket and the ElevenLabs socket, and the refusals are counted by rule and key class. Behaviour only: the
timing effect of each flood on another key is measured by `python -m bench flood_fairness` (docs/benchmarks.md)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api import create_app
from services.access import AccessServices, Authenticator, StaticKeyStore
from services.deployment.runtime import ModelRuntime
from services.usage.request_log import RequestLogger
from shared.metrics import ADMISSION_REFUSALS
from shared.settings import Settings
from tests.conftest import wait_in_portal
from tests.unit.api.test_ws_endings import Rows

BODY = {"text": "Hello.", "speaker": "fixed", "format": "pcm", "max_tokens": 30}


@pytest.fixture(scope="module")
def app(demo_model_dir: Path) -> Iterator[tuple[TestClient, ModelRuntime]]:
    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        auth_enabled=True,
        credits_enabled=True,
        rate_limit_per_minute=10_000,
        request_log_flush_s=0.05,
        default_top_k=1,
        default_max_tokens=30,
        guard_mode="off",
        admission="on",
        admission_continue_ms=0,  # every stream asks: B's requests follow each other, each would continue the last
        max_concurrent_streams=8,
    )
    store = StaticKeyStore()
    store.add_plain_key("flood-key", key_id="flood", credit_balance=100_000)
    store.add_plain_key("victim-key", key_id="victim", credit_balance=100_000)
    access = AccessServices(
        settings,
        authenticator=Authenticator(store, ttl_s=30.0),
        request_logger=RequestLogger(Rows(), flush_s=0.05),
    )  # type: ignore[arg-type]
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime, access=access)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        yield client, runtime


def _http(client: TestClient, key: str) -> Any:
    return client.post("/v1/tts/generate", json=BODY, headers={"Authorization": f"Bearer {key}"})


def _native(client: TestClient, key: str) -> list[dict]:
    """One utterance on our socket; its JSON events (audio frames dropped)."""
    events = []
    with client.websocket_connect(f"/v1/tts/ws?api_key={key}") as ws:
        for message in (
            {"type": "start", "speaker": "fixed", "format": "pcm", "sample_rate": 16000},
            {"type": "text", "text": "Hello."},
            {"type": "end"},
        ):
            ws.send_text(json.dumps(message))
        while True:
            message = ws.receive()
            if message.get("text"):
                events.append(json.loads(message["text"]))
                if events[-1].get("type") in ("done", "error"):
                    return events


def _elevenlabs(client: TestClient, key: str) -> list[dict]:
    """One context on the ElevenLabs socket; its messages up to isFinal."""
    path = f"/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000&xi_api_key={key}"
    messages = []
    with client.websocket_connect(path) as ws:
        for message in (
            {"text": " ", "context_id": "c"},
            {"text": "Hello.", "context_id": "c", "flush": True},
            {"context_id": "c", "close_context": True},
        ):
            ws.send_text(json.dumps(message))
        while not (message := json.loads(ws.receive_text())).get("isFinal"):
            messages.append(message)
        ws.send_text(json.dumps({"close_socket": True}))
    return messages


def _drain(ws: Any) -> None:
    """Read a socket's messages until the server closes it (Starlette's test client waits while some are unread)."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            if ws.receive()["type"] == "websocket.close":
                return


def _refusals(key_class: str) -> float:
    return ADMISSION_REFUSALS.labels(rule="misses", key_class=key_class)._value.get()  # noqa: SLF001


def test_the_flooding_key_is_refused_and_the_other_key_never_is(app, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    client, runtime = app
    scheduler, admission = runtime.codec_scheduler, runtime.admission
    assert scheduler is not None and admission is not None
    monkeypatch.setattr(scheduler, "recent_misses", lambda grace_s=0.0: 0)  # the device keeps up
    path = "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000&xi_api_key=flood-key"
    with client.websocket_connect(path) as flood:
        for cid in ("a", "b", "c", "d"):  # A's four contexts speak and stay open: four streams held
            for message in (
                {"text": " ", "context_id": cid},
                {"text": "Hello.", "context_id": cid, "flush": True},
            ):
                flood.send_text(json.dumps(message))
        wait_in_portal(client, lambda: scheduler.streams_by_owner()["flood"] == 4, timeout_s=30)
        monkeypatch.setattr(scheduler, "recent_misses", lambda grace_s=0.0: 1)  # now the device is short
        over_before, within_before = _refusals("over_share"), admission.within_share_admitted
        within_refused_before = _refusals("within_share")
        victim = []
        for _ in range(3):  # A asks for more; B, one stream at a time, on every transport
            flooded = _http(client, "flood-key")
            assert flooded.status_code == 503 and flooded.headers["retry-after"] == "2"
            assert flooded.json()["error"]["code"] == "SERVER_OVERLOADED"
            victim.append(_http(client, "victim-key").status_code)
            native = _native(client, "victim-key")
            assert native[-1]["type"] == "done", native[-3:]
            eleven = _elevenlabs(client, "victim-key")
            assert any(m.get("audio") for m in eleven) and not any(m.get("error") for m in eleven), eleven[
                -3:
            ]
        assert victim == [200, 200, 200]
        # Each time A asked, B held nothing (its requests had ended): A alone, the rule refused it as anyone
        # (within_share). Each time B asked, A's four open streams and its refusals were over the share of two:
        # every stream of B was admitted past the rule.
        assert (
            _refusals("within_share") - within_refused_before == 3 and _refusals("over_share") == over_before
        )
        assert admission.within_share_admitted - within_before == 9
        held = "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000&xi_api_key=victim-key"
        with client.websocket_connect(
            held
        ) as victim_ws:  # B holds one stream: A's four are over the share of two
            for message in (
                {"text": " ", "context_id": "v"},
                {"text": "Hello.", "context_id": "v", "flush": True},
            ):
                victim_ws.send_text(json.dumps(message))
            wait_in_portal(client, lambda: scheduler.streams_by_owner()["victim"] == 1, timeout_s=30)
            assert _http(client, "flood-key").status_code == 503
            assert (
                _refusals("over_share") - over_before == 1
            )  # B holds one: A's four are over the share of two
            victim_ws.send_text(json.dumps({"close_socket": True}))
            _drain(victim_ws)
        flood.send_text(json.dumps({"close_socket": True}))
        _drain(flood)
        wait_in_portal(client, lambda: scheduler.streams_by_owner()["flood"] == 0, timeout_s=30)
    time.sleep(1.1)  # and its refusals are older than admission's last second
    # A's streams ended: nobody is over its share, and a short device refuses B as it would anyone.
    refused = _http(client, "victim-key")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "SERVER_OVERLOADED"


def test_a_wrong_key_handshake_flood_never_refuses_a_good_key_from_the_same_address(
    app, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """Wrong-key handshakes from one address are throttled (429 once it keeps failing, before the key store); a key
    in use behind the same address (a NAT, a proxy) is still served on every transport (FailedAuthThrottle: a key
    that authenticated within the last 10 minutes is never refused for others' failures at its address)."""
    from starlette.testclient import WebSocketDenialResponse

    client, runtime = app
    # The device keeps up (a miss left by a loaded machine would refuse for reasons this test is not about).
    monkeypatch.setattr(runtime.codec_scheduler, "recent_misses", lambda grace_s=0.0: 0)
    assert _http(client, "victim-key").status_code == 200  # the key is in use
    statuses: dict[int, int] = {}
    for _ in range(60):
        try:
            with client.websocket_connect("/v1/tts/ws?api_key=sk-not-a-key"):
                pass
        except WebSocketDenialResponse as denial:
            statuses[denial.status_code] = statuses.get(denial.status_code, 0) + 1
    assert set(statuses) <= {401, 429} and statuses.get(429, 0) > 0, statuses  # throttled, never accepted
    assert _http(client, "victim-key").status_code == 200
    assert _native(client, "victim-key")[-1]["type"] == "done"
    eleven = _elevenlabs(client, "victim-key")
    assert any(m.get("audio") for m in eleven) and not any(m.get("error") for m in eleven), eleven[-3:]
