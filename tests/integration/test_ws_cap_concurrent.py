"""The WebSocket cap per key holds under concurrent handshakes: 100 handshakes at once, a cap of 4,
the connection rate counted in the real Redis (an await between the cap's check and its count let 100 of 100 in)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api import create_app
from services.access import AccessServices, Authenticator, StaticKeyStore
from services.access.rate_limit import RedisLimiter
from shared.settings import Settings
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.integration

KEY, CAP, HANDSHAKES = "ws-cap-key", 4, 100


@pytest.fixture
def server(demo_model_dir: Path, redis_url: str) -> Iterator[str]:
    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        sr_enabled=False,
        auth_enabled=True,
        rate_limit_per_minute=10_000,
        ws_max_connections_per_key=CAP,
        log_json=False,
        log_level="WARNING",
    )
    store = StaticKeyStore()
    store.add_plain_key(KEY, key_id="ws-cap")
    limiter = RedisLimiter.from_url(redis_url, prefix=f"test:wscap:{uuid.uuid4().hex}:")
    access = AccessServices(settings, authenticator=Authenticator(store, ttl_s=30.0), limiter=limiter)
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    app = create_app(settings, access=access)
    port = free_port()
    uv = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws_max_queue=64, backlog=256
        )
    )
    thread = threading.Thread(target=uv.run, name="ws-cap-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 180
        while not (uv.started and app.state.runtime.ready):
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/v1/tts/ws"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        root.setLevel(root_state[0])
        root.handlers[:] = root_state[1]


async def test_a_hundred_concurrent_handshakes_do_not_pass_a_cap_of_four(server: str) -> None:
    url = server
    opened: list[object] = []
    refused: list[int] = []
    release = asyncio.Event()

    async def handshake(stack: AsyncExitStack) -> None:
        try:
            ws = await stack.enter_async_context(
                connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, open_timeout=60)
            )
        except InvalidStatus as exc:
            refused.append(exc.response.status_code)
            return
        opened.append(ws)
        await release.wait()  # hold it open until every handshake has been answered

    async with AsyncExitStack() as stack:
        tasks = [asyncio.create_task(handshake(stack)) for _ in range(HANDSHAKES)]
        while len(opened) + len(refused) < HANDSHAKES:
            await asyncio.sleep(0.05)
            assert not any(t.done() and t.exception() for t in tasks), [
                t.exception() for t in tasks if t.done()
            ]
        release.set()
        await asyncio.gather(*tasks)
        assert len(opened) == CAP
        assert refused == [429] * (HANDSHAKES - CAP)
