"""No client slows the others: each connection's message budget, the per-address caps on sockets and the
deadline for a key sent in the first message. The limiters with a fake clock; the hooks through the app (TestClient,
the demo checkpoint) with the guard's clock frozen, so no assertion depends on timing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

import pytest
from elevenlabs.types import TextToDialogueWebsocketError
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from api import create_app
from api.socket_guard import SocketGuard, handshake_credential, presented_key
from services.access import AccessServices, Authenticator, FailedAuthThrottle, StaticKeyStore
from services.access.socket_limits import AddressSlots, MessageLimiter, TokenBucket
from services.deployment.runtime import ModelRuntime
from services.keys.records import anonymous_record, hash_key
from shared.settings import Settings
from tests.conftest import wait_in_portal

KEY = "socket-guard-key"
EL_PATH = "/v1/text-to-speech/fixed/multi-stream-input?output_format=pcm_16000&inactivity_timeout=180"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------------- the limiters
def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.25  # 2.5 tokens back
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 100  # refills to the burst, never past it
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(6)  # more than the burst never fits
    assert bucket.tokens == 0  # a refused take spends nothing


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 2), st.floats(0.1, 8)), max_size=60), st.floats(0.5, 50), st.floats(1, 20)
)
def test_a_bucket_never_grants_more_than_its_burst_plus_rate_times_time(steps, rate, burst) -> None:
    clock = Clock()
    bucket = TokenBucket(rate=rate, burst=burst, clock=clock)
    granted = 0.0
    for wait, cost in steps:
        clock.now += wait
        if bucket.take(cost):
            granted += cost
        assert 0 <= bucket.tokens <= burst
    assert granted <= burst + rate * (clock.now - 100.0) + 1e-6


def test_a_message_limiter_refuses_size_then_rate_and_remembers_the_first_refusal() -> None:
    clock = Clock()
    limiter = MessageLimiter(messages_per_s=2, message_burst=3, chars_per_s=100, max_chars=50, clock=clock)
    refusal = limiter.check(51)
    assert refusal is not None and refusal.kind == "size" and "50 characters" in refusal.message
    assert [limiter.check(1) for _ in range(3)] == [None] * 3
    refused = limiter.check(1)
    assert refused is not None and refused.kind == "rate" and "messages per second" in refused.message
    assert limiter.refused is not None and limiter.refused.kind == "size"  # the first one is kept
    clock.now += 10
    assert limiter.check(50) is None  # the characters bucket holds one largest message
    rate = limiter.check(1)
    assert rate is not None and "characters per second" in rate.message


def test_a_message_limiter_with_zero_rates_only_bounds_size() -> None:
    limiter = MessageLimiter(messages_per_s=0, message_burst=1, chars_per_s=0, max_chars=10, clock=Clock())
    assert all(limiter.check(10) is None for _ in range(10_000))
    assert limiter.check(11) is not None


def test_a_keys_connections_share_one_burst_that_reconnecting_does_not_refill() -> None:
    """One key flooding on its eight sockets, reconnecting whenever cut off, pushed a burst per socket per reconnect
    and stalled every other key's requests. Its connections now share one key bucket (two connections' burst, every
    allowed connection's rate) that outlives them; another key has its own."""
    clock = Clock()
    guard = SocketGuard(
        Settings(ws_messages_per_s=10, ws_message_burst=100, ws_max_connections_per_key=8), clock=clock
    )
    sockets = [guard.message_limiter("flooder") for _ in range(8)]
    allowed = 0
    for limiter in sockets:  # each sends a full connection burst at once
        allowed += sum(limiter.check(1) is None for _ in range(100))
    assert allowed == 200  # the key's burst, not 8 x 100
    again = guard.message_limiter("flooder")  # a reconnect: no fresh burst
    assert again.check(1) is not None and "this API key's connections together" in again.refused.message
    other = guard.message_limiter("someone-else")
    assert all(other.check(1) is None for _ in range(100))  # untouched by the flood
    clock.now += 1.0  # one second: every allowed connection's rate comes back to the key (8 x 10)
    assert sum(again.check(1) is None for _ in range(200)) == 80
    anonymous = SocketGuard(Settings(ws_messages_per_s=10, ws_message_burst=100), clock=clock)
    assert anonymous.message_limiter(anonymous_record().key_id).key_bucket is None  # auth off: one shared key


def test_one_address_cannot_empty_the_bucket_its_keys_other_clients_need() -> None:
    """All Wyoming connections run as one key: one address's flood on several connections emptied the key's bucket
    and Home Assistant's requests were refused. An address's connections now spend their own part of it first."""
    clock = Clock()
    key = TokenBucket(rate=80, burst=200, clock=clock)
    mine, theirs = TokenBucket(40, 100, clock), TokenBucket(40, 100, clock)

    def limiter(address: TokenBucket) -> MessageLimiter:
        return MessageLimiter(
            messages_per_s=10,
            message_burst=100,
            chars_per_s=0,
            max_chars=10,
            clock=clock,
            key_bucket=key,
            address_bucket=address,
        )

    flood = [limiter(mine) for _ in range(8)]
    assert (
        sum(f.check(1) is None for f in flood for _ in range(100)) == 100
    )  # the address's burst, not 8 x 100
    assert "address's connections together" in flood[-1].refused.message
    home = limiter(theirs)
    assert all(home.check(1) is None for _ in range(100))  # the key's bucket kept its share for the others


def test_address_slots_cap_each_address_and_forget_empty_ones() -> None:
    slots = AddressSlots(cap=2)
    assert slots.enter("a") and slots.enter("a") and not slots.enter("a")
    assert slots.enter("b")  # another address is not affected
    slots.leave("a")
    assert slots.enter("a") and slots.held("a") == 2
    for _ in range(2):
        slots.leave("a")
    slots.leave("b")
    assert len(slots) == 0
    uncapped = AddressSlots(cap=0)
    assert all(uncapped.enter("a") for _ in range(1000))


# ---------------------------------------------------------------------------------------------- through the app
@pytest.fixture(scope="module")
def app_client(demo_model_dir: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        auth_enabled=True,
        ws_auth_deadline_s=0.3,
        ws_max_unauthenticated_per_address=2,
        ws_messages_per_s=1,
        ws_message_burst=4,
        ws_message_chars_per_s=1000,
        ws_max_message_bytes=2000,
        rate_limit_per_minute=10_000,
    )
    store = StaticKeyStore()
    store.add_plain_key(KEY, key_id="socket-guard")
    access = AccessServices(settings, authenticator=Authenticator(store, ttl_s=30.0))
    runtime = ModelRuntime(settings)
    app = create_app(settings, runtime=runtime, access=access)
    with TestClient(app) as client:
        wait_in_portal(client, lambda: runtime.ready)
        yield client, settings


@pytest.fixture
def frozen(app_client: tuple[TestClient, Settings]) -> Iterator[TestClient]:
    """The guard's clock stands still: a connection's buckets never refill during a test."""
    client, settings = app_client
    client.app.state.socket_guard = SocketGuard(settings, clock=Clock())
    yield client
    client.app.state.socket_guard = None


def _closed(ws) -> tuple[list[dict], int]:
    """Messages until the close, and the close code."""
    seen = []
    while True:
        try:
            seen.append(json.loads(ws.receive_text()))
        except WebSocketDisconnect as exc:
            return seen, exc.code


def test_a_key_in_the_first_message_must_come_within_the_deadline(frozen: TestClient) -> None:
    with frozen.websocket_connect(EL_PATH) as ws:  # inactivity_timeout=180, but the key must come in 0.3 s
        seen, code = _closed(ws)
    assert code == 1008
    assert seen[-1]["error"] == "invalid_api_key" and "within 0.3 s" in seen[-1]["message"]
    assert len(frozen.app.state.socket_guard.unauthenticated) == 0  # its place was given back


def test_a_key_in_the_first_message_is_still_accepted(frozen: TestClient) -> None:
    with frozen.websocket_connect(EL_PATH) as ws:
        ws.send_text(json.dumps({"text": " ", "xi_api_key": KEY, "context_id": "c"}))
        ws.send_text(json.dumps({"close_socket": True}))
        seen, code = _closed(ws)
    assert code == 1000 and seen == []  # a refused key would be an error message and 1008


def test_a_wrong_key_in_the_first_message_is_refused_in_elevenlabs_shape(frozen: TestClient) -> None:
    with frozen.websocket_connect(EL_PATH) as ws:
        ws.send_text(json.dumps({"text": " ", "xi_api_key": "not-the-key", "context_id": "c"}))
        seen, code = _closed(ws)
    assert code == 1008 and len(seen) == 1
    refusal = seen[0]
    # ElevenLabs' documented shape: the SDK's type reads it, and nothing else travels with it
    parsed = TextToDialogueWebsocketError.model_validate(refusal)
    assert set(refusal) == {"message", "error", "code"}
    assert parsed.error == "invalid_api_key" and parsed.code == code and parsed.message


def test_sockets_waiting_for_a_key_are_capped_per_address(frozen: TestClient) -> None:
    guard: SocketGuard = frozen.app.state.socket_guard
    with ExitStack() as stack:
        waiting = [stack.enter_context(frozen.websocket_connect(EL_PATH)) for _ in range(2)]
        assert guard.unauthenticated.held("testclient") == 2
        with frozen.websocket_connect(EL_PATH) as third:
            seen, code = _closed(third)
        assert code == 1008 and seen[0]["error"] == "too_many_concurrent_requests"
        with pytest.raises(WebSocketDenialResponse) as denied, frozen.websocket_connect("/v1/tts/ws"):
            pass  # our WebSocket refuses in the handshake, with the HTTP status
        assert denied.value.status_code == 429
        # A socket with its key in the handshake takes no unauthenticated place: keyless sockets filling an
        # address's cap (a NAT, a proxy that names no client) never lock out a keyed client there.
        with frozen.websocket_connect("/v1/tts/ws", headers={"Authorization": f"Bearer {KEY}"}) as keyed:
            keyed.send_text(json.dumps({"type": "ping", "id": 1}))
            assert json.loads(keyed.receive_text())["type"] == "pong"
        with frozen.websocket_connect(f"{EL_PATH}&xi_api_key={KEY}") as keyed:
            keyed.send_text(json.dumps({"close_socket": True}))
            assert _closed(keyed) == ([], 1000)
        with (
            pytest.raises(WebSocketDenialResponse) as wrong,
            frozen.websocket_connect("/v1/tts/ws", headers={"Authorization": "Bearer wrong-key"}),
        ):
            pass  # a wrong key is refused in its handshake all the same
        assert wrong.value.status_code == 401
        assert guard.unauthenticated.held("testclient") == 2
        for ws in waiting:  # the deadline ends them and gives their places back
            assert _closed(ws)[1] == 1008
    assert guard.unauthenticated.held("testclient") == 0
    with frozen.websocket_connect("/v1/tts/ws", headers={"Authorization": f"Bearer {KEY}"}) as ws:
        ws.send_text(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(ws.receive_text())["type"] == "pong"
        assert guard.unauthenticated.held("testclient") == 0 and guard.connections.held("testclient") == 1
    assert len(guard.connections) == 0


def test_a_message_flood_is_refused_with_an_error_then_1008(frozen: TestClient) -> None:
    with frozen.websocket_connect("/v1/tts/ws", headers={"Authorization": f"Bearer {KEY}"}) as ws:
        for i in range(6):  # a burst of 4, and the clock stands still
            ws.send_text(json.dumps({"type": "ping", "id": i}))
        seen, code = _closed(ws)
    assert [m["type"] for m in seen] == ["pong"] * 4 + ["error"]
    assert (
        seen[-1]["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        and "messages per second" in seen[-1]["error"]["message"]
    )
    assert code == 1008


def test_a_flood_on_the_dialects_gets_their_error_shape(frozen: TestClient) -> None:
    path = EL_PATH + f"&xi_api_key={KEY}"
    with frozen.websocket_connect(path) as ws:
        for _ in range(6):
            ws.send_text(json.dumps({"text": ""}))  # keep-alives: answered by nothing
        seen, code = _closed(ws)
    assert code == 1008 and seen[-1]["error"].startswith("rate_limit_exceeded: ")
    frozen.app.state.socket_guard.clock.now += 10  # past the key's cool-down
    with frozen.websocket_connect(f"/tts/websocket?api_key={KEY}") as ws:
        for _ in range(6):
            ws.send_text(json.dumps({"context_id": "c", "cancel": True}))
        seen, code = _closed(ws)
    assert code == 1008 and seen[-1]["type"] == "error" and "messages per second" in seen[-1]["error"]


def test_a_message_over_the_size_limit_is_refused_unparsed_then_1009(frozen: TestClient) -> None:
    with frozen.websocket_connect("/v1/tts/ws", headers={"Authorization": f"Bearer {KEY}"}) as ws:
        ws.send_text("[" * 2001)  # never parsed: JSON this deep would be an INVALID_JSON refusal
        seen, code = _closed(ws)
    assert seen[-1]["error"]["code"] == "PAYLOAD_TOO_LARGE" and code == 1009
    with frozen.websocket_connect(EL_PATH) as ws:  # before a key: refused unparsed too
        ws.send_text("x" * 2001)
        seen, code = _closed(ws)
    assert seen[-1]["error"] == "payload_too_large" and code == 1008


def test_a_key_that_flooded_cools_down_before_it_may_connect_again(frozen: TestClient) -> None:
    clock: Clock = frozen.app.state.socket_guard.clock
    headers = {"Authorization": f"Bearer {KEY}"}
    with frozen.websocket_connect("/v1/tts/ws", headers=headers) as ws:
        for i in range(5):
            ws.send_text(json.dumps({"type": "ping", "id": i}))
        assert _closed(ws)[1] == 1008
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        frozen.websocket_connect("/v1/tts/ws", headers=headers),
    ):
        pass
    assert denied.value.status_code == 429 and denied.value.headers["Retry-After"] == "10"
    assert "refused for 10 s" in denied.value.json()["error"]["message"]
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        frozen.websocket_connect(EL_PATH, headers={"xi-api-key": KEY}),
    ):
        pass  # a dialect that answers other refusals in-band refuses this one in the handshake too
    assert denied.value.status_code == 429
    clock.now += 10.0  # TTS_WS_FLOOD_PENALTY_S (default 10) later: welcome again
    with frozen.websocket_connect("/v1/tts/ws", headers=headers) as ws:
        ws.send_text(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(ws.receive_text())["type"] == "pong"


# ---------------------------------------------------------------------------------------------- the cooling gate
@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60),
    st.sampled_from(["bearer", "x-api-key", "xi-api-key", "api_key", "xi_api_key"]),
)
def test_the_gate_reads_the_key_the_route_authenticates(key: str, where: str) -> None:
    headers, query = [], b""
    if where == "bearer":
        headers.append((b"authorization", f"Bearer {key}".encode()))
    elif where in ("x-api-key", "xi-api-key"):
        headers.append((where.encode(), key.encode()))
    else:
        query = urlencode({"output_format": "pcm_16000", where: key}).encode()
    scope = {"type": "websocket", "headers": [(b"host", b"x"), *headers], "query_string": query}
    assert handshake_credential(scope) == hash_key(key)
    assert handshake_credential({"type": "websocket", "headers": [], "query_string": b"api_key="}) is None


def test_a_cooling_keys_reconnect_is_refused_before_routing(frozen: TestClient) -> None:
    """The gate answers with the route's own refusal, for the key wherever the handshake carries it, before the
    route (or its absence) is looked at; a socket whose key comes in its first message is refused by the route."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with frozen.websocket_connect("/v1/tts/ws", headers=headers) as ws:
        for i in range(5):
            ws.send_text(json.dumps({"type": "ping", "id": i}))
        assert _closed(ws)[1] == 1008
    guard: SocketGuard = frozen.app.state.socket_guard
    assert (
        guard.credential_cooling({"type": "websocket", "headers": [(b"x-api-key", KEY.encode())]}) is not None
    )
    for path, extra in (
        ("/v1/tts/ws", headers),
        (f"/v1/tts/ws?api_key={KEY}", {}),
        (f"{EL_PATH}&xi_api_key={KEY}", {}),
        ("/no/such/socket", headers),
    ):
        with pytest.raises(WebSocketDenialResponse) as denied, frozen.websocket_connect(path, headers=extra):
            pass
        assert denied.value.status_code == 429 and denied.value.headers["Retry-After"] == "10", path
        assert denied.value.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED", path
    with frozen.websocket_connect(
        EL_PATH
    ) as ws:  # the key in the first message: the route refuses it in-band
        ws.send_text(json.dumps({"text": " ", "xi_api_key": KEY}))
        seen, code = _closed(ws)
    assert code == 1008 and seen[-1]["error"] == "rate_limit_exceeded"


def test_a_cooling_credential_expires_and_is_forgotten() -> None:
    clock = Clock()
    guard = SocketGuard(Settings(ws_flood_penalty_s=10), clock=clock)
    scope = {"type": "websocket", "headers": [(b"authorization", b"Bearer k1")], "query_string": b""}
    guard.penalise("key-1", hash_key("k1"))
    assert guard.credential_cooling(scope).headers["Retry-After"] == "10"
    clock.now += 9.5
    assert guard.credential_cooling(scope).headers["Retry-After"] == "1"
    assert guard.credential_cooling({**scope, "headers": [(b"x-api-key", b"k2")]}) is None  # another key
    clock.now += 0.5
    assert guard.credential_cooling(scope) is None
    guard.penalise("key-1", hash_key("k1"))
    clock.now += 20
    guard.penalise("key-2", hash_key("k2"))  # the expired entries of key-1 go
    assert list(guard._cooling) == ["key-2"] and len(guard._cooling_credentials) == 1  # noqa: SLF001
    guard.penalise(anonymous_record().key_id, hash_key("k3"))  # auth off: the one shared key never cools down
    assert len(guard._cooling_credentials) == 1  # noqa: SLF001


# ---------------------------------------------------------------------------------------------- wrong-key floods
@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ([(b"authorization", b"Bearer a")], b"api_key=q", "a"),
        ([(b"x-api-key", b"b")], b"api_key=q", "b"),
        (
            [(b"xi-api-key", b"c")],
            b"api_key=q",
            "q",
        ),  # the query stands in for X-API-Key, read before xi-api-key
        ([(b"xi-api-key", b"c")], b"", "c"),
        ([], b"output_format=pcm&api_key=q", "q"),
        ([], b"api_key=", None),
        ([(b"host", b"x")], b"", None),
    ],
)
def test_the_gate_reads_the_key_as_the_native_route_does(headers, query, expected) -> None:
    assert presented_key({"type": "websocket", "headers": headers, "query_string": query}) == expected


def test_a_throttled_address_is_refused_at_the_gate_and_a_real_key_still_passes(
    frozen: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the address's failed-key limit the native socket's handshake gets the route's own 429 without reaching
    the route (no authentication runs); a real key from the same address is still let through to the route."""
    access = frozen.app.state.services.access
    monkeypatch.setattr(access, "auth_throttle", FailedAuthThrottle(limit=3))
    calls: list[str] = []
    authenticate = access.authenticate

    async def counted(headers, address=None):  # noqa: ANN001, ANN202 - the spy keeps the real signature
        calls.append(address)
        return await authenticate(headers, address)

    monkeypatch.setattr(access, "authenticate", counted)
    for _ in range(3):
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            frozen.websocket_connect("/v1/tts/ws?api_key=bad"),
        ):
            pass
        assert denied.value.status_code == 401
    assert len(calls) == 3
    for path in ("/v1/tts/ws?api_key=bad", "/v1/tts/ws?api_key=another-bad", "/v1/tts/ws"):
        with pytest.raises(WebSocketDenialResponse) as denied, frozen.websocket_connect(path):
            pass
        assert denied.value.status_code == 429 and int(denied.value.headers["Retry-After"]) > 0, path
        assert denied.value.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED", path
    assert len(calls) == 3  # refused before the route: no authentication ran
    with frozen.websocket_connect("/v1/tts/ws", headers={"Authorization": f"Bearer {KEY}"}) as ws:
        ws.send_text(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(ws.receive_text())["type"] == "pong"
    assert len(calls) == 4
