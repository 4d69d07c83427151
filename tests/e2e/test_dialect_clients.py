"""ElevenLabs clients of two awkward kinds against a real server (in this process, so its metrics are readable):
an older client that sends its key in the first message (`xi_api_key`), and a client that stops reading, which the
shared outbox cuts off with nothing left running. The listening socket has a small send buffer and the client a
small receive buffer (as in test_backpressure), so a reader that stops is noticed within seconds."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.test_backpressure import RECV_BUFFER, SEND_BUFFER, SENTENCES, InProcessServer

pytestmark = pytest.mark.e2e
KEY = "dialect-clients-key"
STALL_S = 2.0


@pytest.fixture(scope="module")
def live(demo_model_dir: Path) -> Iterator[InProcessServer]:
    from shared.settings import Settings

    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys=KEY,
        device="cpu",
        stream_queue_chunks=2,
        send_stall_timeout_s=STALL_S,
    )
    server = InProcessServer(settings, send_buffer=SEND_BUFFER).start()
    try:
        yield server
    finally:
        server.stop()


def _url(live: InProcessServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{live.port}/v1/text-to-speech/default/multi-stream-input{query}"


async def _final_audio(ws, context_id: str) -> bytes:
    audio = b""
    while not (message := json.loads(await asyncio.wait_for(ws.recv(), 120))).get("isFinal"):
        assert "error" not in message, message
        assert message["contextId"] == context_id
        audio += base64.b64decode(message["audio"])
    return audio


async def test_elevenlabs_key_in_the_first_message(live: InProcessServer) -> None:
    async with connect(_url(live, "?output_format=pcm_16000"), open_timeout=20) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "k", "xi_api_key": KEY}))
        await ws.send(json.dumps({"text": "Hello there. ", "context_id": "k", "close_context": True}))
        assert len(await _final_audio(ws, "k")) > 8000
    async with connect(_url(live), open_timeout=20) as ws:  # a wrong key: the dialect's error, then 1008
        await ws.send(json.dumps({"text": " ", "xi_api_key": "not-a-key"}))
        refusal = json.loads(await asyncio.wait_for(ws.recv(), 30))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 30)
    assert refusal["error"] == "invalid_api_key" and refusal["code"] == 1008  # ElevenLabs' socket error shape
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with connect(
        _url(live), open_timeout=20, additional_headers={"xi-api-key": KEY}
    ) as ws:  # header: as before
        await ws.send(json.dumps({"text": "Hi. ", "context_id": "h", "close_context": True}))
        assert await _final_audio(ws, "h")


async def test_elevenlabs_client_that_stops_reading_is_cut_off(live: InProcessServer) -> None:
    from shared.metrics import ACTIVE_STREAMS, REGISTRY

    def stalled_cuts() -> float:
        return REGISTRY.get_sample_value("veena3_tts_stalled_clients_cut_total") or 0.0

    cuts = stalled_cuts()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)  # before connect: caps the window
    sock.connect(("127.0.0.1", live.port))
    async with connect(
        _url(live, "?output_format=pcm_48000"),
        sock=sock,
        open_timeout=20,
        additional_headers={"xi-api-key": KEY},
        max_queue=1,
    ) as ws:
        for index in range(3):  # three contexts of long text, then never read
            await ws.send(
                json.dumps(
                    {"text": " ".join(SENTENCES * 2) + " ", "context_id": f"c{index}", "close_context": True}
                )
            )
        started = time.monotonic()
        while stalled_cuts() == cuts and time.monotonic() - started < 120:
            await asyncio.sleep(0.1)
        assert stalled_cuts() == cuts + 1, "the stalled reader was not cut"
        while live.runtime.engine.active_requests() or ACTIVE_STREAMS._value.get():
            assert time.monotonic() - started < 150, "generation kept running after the cut"
            await asyncio.sleep(0.1)
        with pytest.raises(ConnectionClosed):  # what the kernel held arrives, then the close
            while True:
                await asyncio.wait_for(ws.recv(), 30)
    assert ACTIVE_STREAMS._value.get() == 0 and live.runtime.engine.active_requests() == set()
