"""Cartesia's own Python SDK (cartesia 4.x) against a real uvicorn server (demo checkpoint, auth on): the voices
(`voices.list()` page by page, `voices.get()`, an unknown id as the SDK's NotFoundError in Cartesia's shape), and the
docs' example (docs/voice-agents.md): bytes, and a socket context through `websocket_base_url="ws://..."`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e
cartesia = pytest.importorskip("cartesia")

KEY = "cartesia-sdk-key"
PCM = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}


@pytest.fixture(scope="module")
def live(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        demo_model_dir,
        tmp_path_factory.mktemp("cartesia-sdk") / "server.log",
        {"TTS_AUTH_ENABLED": "true", "TTS_API_KEYS": KEY},
    )
    yield running
    stop_server(running)


def _client(live: RunningServer) -> object:
    ws = live.base_url.replace("http://", "ws://", 1)
    return cartesia.Cartesia(api_key=KEY, base_url=live.base_url, websocket_base_url=ws)


def test_voices_list_pages_and_get(live: RunningServer) -> None:
    client = _client(live)
    listed = [v.id for v in client.voices.list()]  # type: ignore[attr-defined]
    paged = [v.id for v in client.voices.list(limit=1)]  # type: ignore[attr-defined] - the SDK follows the cursor
    assert "default" in listed and paged == listed and len(set(listed)) == len(listed)
    voice = client.voices.get("default")  # type: ignore[attr-defined]
    assert voice.id == "default" and voice.name and voice.access == "public" and not voice.is_owner
    assert [v.id for v in client.voices.list(q="DEFAULT")] == ["default"]  # type: ignore[attr-defined]
    with pytest.raises(cartesia.NotFoundError) as missing:
        client.voices.get("no-such-voice")  # type: ignore[attr-defined]
    body = missing.value.body
    assert isinstance(body, dict) and set(body) >= {"error_code", "title", "message", "request_id"}, body


def test_the_docs_example_bytes_and_socket(live: RunningServer) -> None:
    client = _client(live)
    voice = {"mode": "id", "id": "default"}
    answer = client.tts.generate(
        model_id="sonic-3", transcript="Hello there.", voice=voice, output_format=PCM
    )  # type: ignore[attr-defined]
    audio = answer.read()
    assert len(audio) > 16000  # more than half a second of 16-bit audio
    with client.tts.websocket_connect() as connection:  # type: ignore[attr-defined]
        context = connection.context(model_id="sonic-3", voice=voice, output_format=PCM)
        context.push("Hello there. ")
        context.no_more_inputs()
        streamed = b"".join(r.audio for r in context.receive() if r.type == "chunk" and r.audio)
    assert len(streamed) > 16000
