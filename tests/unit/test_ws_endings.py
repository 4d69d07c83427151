"""How a WebSocket ended decides what its unfinished utterances pay (docs/credits.md, "A socket the server ends"):
the client's own close is a hang-up; a connection lost without its close frame (the network, a vanished client, the
server's keepalive) or ended by the server is charged for the audio that reached the socket."""

from __future__ import annotations

from api.ws_connection import SERVER_ENDED, connection_lost


def test_a_lost_connection_is_told_from_the_clients_own_close() -> None:
    # uvicorn's websockets-sansio protocol: a lost connection (keepalive timeout, TCP reset) has no reason ...
    assert connection_lost({"type": "websocket.disconnect", "code": 1005})
    # ... a received close frame always has one, also without a code (a browser's ws.close()).
    assert not connection_lost({"type": "websocket.disconnect", "code": 1005, "reason": ""})
    assert not connection_lost({"type": "websocket.disconnect", "code": 1000, "reason": ""})
    assert not connection_lost({"type": "websocket.disconnect", "code": 1001, "reason": "going away"})
    # The legacy websockets protocol: an abnormal closure.
    assert connection_lost({"type": "websocket.disconnect", "code": 1006, "reason": ""})


def test_only_endings_the_client_did_not_choose_charge_for_the_audio_sent() -> None:
    assert {"stalled", "over_budget", "lost", "send_failed"} == SERVER_ENDED
    assert not SERVER_ENDED & {"disconnect", "close", "idle", "server_error"}
