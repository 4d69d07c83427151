"""One WebSocket utterance against a running server, as tests send it: a `start` with its text, then every binary
frame until the `done` (or `error`) event."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect


def speak_once(
    base_url: str, headers: dict[str, str], start: dict, timeout_s: float = 120.0
) -> tuple[dict, bytes]:
    """The final event and the audio bytes of one utterance (blocking; runs its own event loop)."""

    async def run() -> tuple[dict, bytes]:
        url = base_url.replace("http://", "ws://") + "/v1/tts/ws"
        async with connect(url, additional_headers=headers, max_size=None) as ws:
            await ws.send(json.dumps(start))
            audio = b""
            while True:
                message = await asyncio.wait_for(ws.recv(), timeout_s)
                if isinstance(message, bytes):
                    audio += message
                    continue
                event = json.loads(message)
                if event["type"] in ("done", "error"):
                    return event, audio

    return asyncio.run(run())
