"""ElevenLabs and Cartesia WebSocket dialects against a real server (subprocess) and a real WebSocket client:
every bad input gets the dialect's own error shape, and nothing is left running afterwards. The frameworks' own
clients are exercised in tests/agents."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e


def _ws(server: RunningServer, path: str):
    return connect(server.base_url.replace("http", "ws", 1) + path, max_size=None, open_timeout=20)


async def _messages_until_closed(ws, timeout_s: float = 60.0) -> tuple[list[dict], int | None]:
    out: list[dict] = []
    try:
        while True:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), timeout_s)))
    except ConnectionClosed as closed:
        return out, closed.rcvd.code if closed.rcvd else None


def _active_streams(server: RunningServer) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=5).text
    match = re.search(r"^\w*_active_streams (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _wait_idle(server: RunningServer) -> None:
    deadline = time.monotonic() + 30
    while _active_streams(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _active_streams(server) == 0


@pytest.mark.parametrize(
    "path, code",
    [
        ("/v1/text-to-speech/nobody/multi-stream-input", "invalid_speaker"),
        ("/v1/text-to-speech/default/multi-stream-input?output_format=pcm_12345", "validation_error"),
        ("/v1/text-to-speech/default/multi-stream-input?output_format=opus_48000_64", "validation_error"),
        ("/v1/text-to-speech/default/multi-stream-input?inactivity_timeout=999", "validation_error"),
    ],
)
async def test_elevenlabs_bad_connection_gets_an_error_then_1008(
    server: RunningServer, path: str, code: str
) -> None:
    async with _ws(server, path) as ws:
        messages, close_code = await _messages_until_closed(ws)
    assert [m["error"] for m in messages] == [code]
    assert messages[0]["code"] == close_code == 1008  # ElevenLabs' refusal: message, error id, close code


async def test_elevenlabs_contexts_limits_and_close_socket(server: RunningServer) -> None:
    async with _ws(server, "/v1/text-to-speech/default/multi-stream-input?output_format=ulaw_8000") as ws:
        await ws.send(json.dumps({"text": "x" * 50_001, "context_id": "long"}))
        too_long = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert too_long["error"].startswith("text_too_long: ") and too_long["contextId"] == "long"
        ended = json.loads(
            await asyncio.wait_for(ws.recv(), 30)
        )  # a refusal ends its context: Pipecat's turn ends
        assert ended == {"contextId": "long", "context_id": "long", "isFinal": True}
        await ws.send(json.dumps({"context_id": "ghost", "close_context": True}))  # never opened: ignored
        await ws.send(json.dumps({"text": "not json"})[:-3])
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["error"].startswith("invalid_json: ")
        for index in range(6):  # a sixth unfinished context is refused, the five others keep going
            await ws.send(
                json.dumps({"text": "A sentence that takes a while to say. ", "context_id": f"c{index}"})
            )
            await ws.send(json.dumps({"text": "", "context_id": f"c{index}"}))  # keep-alive: ends nothing
        audio_contexts: set[str] = set()
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if message.get("audio"):
                assert base64.b64decode(message["audio"])  # ulaw bytes
                audio_contexts.add(message["contextId"])
                assert message["context_id"] == message["contextId"]
            if message.get("error"):
                assert message["error"].startswith("too_many_concurrent_requests: ")
                assert message["contextId"] == "c5"
                ended = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert ended == {"contextId": "c5", "context_id": "c5", "isFinal": True}
                break
        await ws.send(json.dumps({"close_socket": True}))
        await ws.send(json.dumps({"text": "After the close. ", "context_id": "c0"}))  # never answered
        rest, close_code = await _messages_until_closed(ws)
    assert close_code == 1000
    assert not any(m.get("isFinal") for m in rest)  # cancelled, not finished
    assert "c5" not in audio_contexts
    _wait_idle(server)


async def test_elevenlabs_close_context_finishes_then_is_final(server: RunningServer) -> None:
    async with _ws(server, "/v1/text-to-speech/default/multi-stream-input?output_format=pcm_16000") as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "a", "voice_settings": {"speed": 1.1}}))
        for word in "Hello there, this is the first turn".split():
            await ws.send(json.dumps({"text": word + " ", "context_id": "a"}))
        await ws.send(
            json.dumps({"context_id": "a", "flush": True})
        )  # the final flush: the context is finished
        await ws.send(json.dumps({"context_id": "a", "close_context": True}))
        audio = b""
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 90))
            assert "error" not in message, message
            if message.get("audio"):
                audio += base64.b64decode(message["audio"])
            if message.get("isFinal"):
                assert message["contextId"] == "a"
                break
        assert len(audio) > 16000 and len(audio) % 2 == 0  # > 0.5 s of 16-bit PCM
        # a finished context's id may be used again: a new chain
        await ws.send(json.dumps({"text": "More. ", "context_id": "a", "close_context": True}))
        while not (message := json.loads(await asyncio.wait_for(ws.recv(), 90))).get("isFinal"):
            assert "error" not in message, message


async def test_elevenlabs_barge_ins_stop_the_interrupted_context(server: RunningServer) -> None:
    """LiveKit's interrupted stream: close_context with no final flush stops the context (isFinal at once).
    Pipecat's barge-in: the next turn's context opens while the earlier one, silent since, still speaks. A context
    with nothing to speak ends with a short silence and isFinal."""
    long_text = "This reply is long enough to still be speaking when the user barges in on it. " * 3
    async with _ws(server, "/v1/text-to-speech/default/multi-stream-input?output_format=pcm_16000") as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "lk"}))
        await ws.send(json.dumps({"text": long_text, "context_id": "lk"}))
        while not json.loads(await asyncio.wait_for(ws.recv(), 90)).get("audio"):
            pass
        await ws.send(json.dumps({"context_id": "lk", "close_context": True}))
        while not (message := json.loads(await asyncio.wait_for(ws.recv(), 10))).get("isFinal"):
            assert message["contextId"] == "lk" and "error" not in message
        assert message["contextId"] == "lk"
        await ws.send(json.dumps({"text": long_text, "context_id": "p1"}))
        await ws.send(json.dumps({"context_id": "p1", "flush": True}))
        await ws.send(json.dumps({"context_id": "p1", "close_context": True}))
        while not json.loads(await asyncio.wait_for(ws.recv(), 90)).get("audio"):
            pass
        await asyncio.sleep(0.6)  # the user speaks; the LLM answers
        await ws.send(json.dumps({"text": "Okay. ", "context_id": "p2"}))
        await ws.send(json.dumps({"text": "🙂", "context_id": "e", "flush": True, "close_context": True}))
        await ws.send(json.dumps({"context_id": "p2", "flush": True, "close_context": True}))
        after: list[dict] = []
        while (
            not (message := json.loads(await asyncio.wait_for(ws.recv(), 90))).get("isFinal")
            or message["contextId"] != "p2"
        ):
            after.append(message)
        assert not [m for m in after if "error" in m]
        p1 = [i for i, m in enumerate(after) if m["contextId"] == "p1"]
        assert p1 and after[p1[-1]].get("isFinal")  # p1 ended before a byte of p2 went out
        assert p1[-1] < min(i for i, m in enumerate(after) if m["contextId"] == "p2")
        of_e = [
            m for m in after if m["contextId"] == "e"
        ]  # a short silence (Pipecat needs audio), then isFinal
        assert of_e[-1] == {"contextId": "e", "context_id": "e", "isFinal": True}
        assert of_e[:-1] and all(m.get("audio") for m in of_e[:-1]), of_e
        await ws.send(json.dumps({"close_socket": True}))
    _wait_idle(server)
    stops = [json.loads(line) for line in server.log_text().splitlines() if '"utterance_stopped"' in line]
    assert {(s["context_id"], s["reason"]) for s in stops} >= {("lk", "abandoned"), ("p1", "superseded")}


async def test_elevenlabs_stream_input_closes_after_its_final_message(server: RunningServer) -> None:
    async with _ws(server, "/v1/text-to-speech/default/stream-input?output_format=pcm_16000") as ws:
        for message in ({"text": " "}, {"text": "Hello there. "}, {"text": ""}):
            await ws.send(json.dumps(message))
        messages, close_code = await _messages_until_closed(ws, 90)
    assert messages[-1].get("isFinal") is True and close_code == 1000
    assert any(m.get("audio") for m in messages)


async def test_cartesia_errors_cancel_and_done(server: RunningServer) -> None:
    base = {
        "model_id": "sonic-3",
        "output_format": {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 16000},
    }
    async with _ws(server, "/tts/websocket?cartesia_version=2025-04-16") as ws:
        await ws.send(
            json.dumps(
                {
                    **base,
                    "context_id": "v",
                    "voice": {"mode": "id", "id": "nobody"},
                    "transcript": "Hi. ",
                    "continue": False,
                }
            )
        )
        unknown = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert (
            unknown["type"] == "error"
            and unknown["status_code"] in (400, 404)
            and unknown["context_id"] == "v"
        )
        await ws.send(
            json.dumps(
                {
                    **base,
                    "context_id": "f",
                    "voice": {"mode": "id", "id": "default"},
                    "output_format": {"container": "raw", "encoding": "pcm_alaw", "sample_rate": 8000},
                    "transcript": "Hi. ",
                }
            )
        )
        bad = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert bad["type"] == "error" and bad["status_code"] == 400 and bad["context_id"] == "f"
        voice = {"mode": "id", "id": "default"}
        await ws.send(
            json.dumps(
                {
                    **base,
                    "context_id": "x",
                    "voice": voice,
                    "add_timestamps": True,
                    "transcript": "This one is cancelled before it can finish speaking. ",
                    "continue": True,
                }
            )
        )
        await ws.send(
            json.dumps(
                {**base, "context_id": "x", "voice": voice, "flush": True, "transcript": "", "continue": True}
            )
        )
        seen: set[str] = set()
        while not {"flush_done", "chunk"} <= seen:  # the flush is acknowledged and audio of x is flowing
            message = json.loads(await asyncio.wait_for(ws.recv(), 60))
            assert message["context_id"] == "x" and message["type"] != "error", message
            seen.add(message["type"])
        await ws.send(json.dumps({"context_id": "x", "cancel": True}))
        await ws.send(
            json.dumps(
                {**base, "context_id": "y", "voice": voice, "transcript": "Short. ", "continue": False}
            )
        )
        audio = b""
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 90))
            assert message["type"] != "error", message
            if message["type"] == "chunk" and message["context_id"] == "y":
                audio += base64.b64decode(message["data"])
            if message["type"] == "done":
                assert message["context_id"] == "y" and message["done"] is True  # x was cancelled: no done
                break
        assert len(audio) % 4 == 0 and len(audio) > 0  # float32 samples
    _wait_idle(server)


async def test_cartesia_max_buffer_delay_speaks_a_trailing_clause_without_a_flush(
    server: RunningServer,
) -> None:
    """No flush and no end: the sentence is cut at its end at once, the clause after it (no punctuation) once it
    has waited max_buffer_delay_ms; each word spoken once, in order."""
    base = {
        "model_id": "sonic-3",
        "voice": {"mode": "id", "id": "default"},
        "add_timestamps": True,
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "context_id": "d",
    }
    first, trailing = "Good morning to you all. ", "And then some more"
    async with _ws(server, "/tts/websocket") as ws:
        await ws.send(json.dumps({**base, "transcript": first, "continue": True, "max_buffer_delay_ms": 200}))
        await ws.send(json.dumps({**base, "transcript": trailing, "continue": True}))
        words: list[
            str
        ] = []  # timing follows the audio as the aligner settles words: several messages per chunk
        chunks = 0
        while words != (first + trailing).split():
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))  # main: the clause waits for the end
            assert message["context_id"] == "d" and message["type"] in ("chunk", "timestamps"), message
            if message["type"] == "timestamps":
                words += [w.strip() for w in message["word_timestamps"]["words"]]  # a sentence end's space
                assert words == (first + trailing).split()[: len(words)], words  # each word once, in order
            else:
                chunks += 1
        await ws.send(json.dumps({**base, "transcript": "", "continue": False}))
        while (message := json.loads(await asyncio.wait_for(ws.recv(), 60)))["type"] != "done":
            assert message["type"] == "chunk", message  # nothing more to say: the rest of the clause's audio
            chunks += 1
        assert chunks > 1
    _wait_idle(server)


def _curl(
    server: RunningServer, path: str, body: dict | None, tmp_path, headers: tuple[str, ...] = ()
) -> tuple[int, bytes]:
    out = tmp_path / "body"
    args = ["curl", "-s", "-o", str(out), "-w", "%{http_code}", f"{server.base_url}{path}"]
    for header in headers:
        args += ["-H", header]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    status = subprocess.run(args, check=True, capture_output=True, text=True, timeout=120).stdout
    return int(status), out.read_bytes()


def test_elevenlabs_http_routes_and_voices(server: RunningServer, tmp_path) -> None:
    status, body = _curl(server, "/v1/voices", None, tmp_path)
    voices = json.loads(body)["voices"]
    assert status == 200 and voices[0]["voice_id"] == "default" and voices[0]["category"] == "premade"
    status, audio = _curl(
        server,
        "/v1/text-to-speech/default?output_format=pcm_16000",
        {"text": "Hello there.", "voice_settings": {"speed": 1.0, "stability": 0.5}},
        tmp_path,
        ("xi-api-key: anything",),
    )
    assert status == 200 and len(audio) > 8000 and len(audio) % 2 == 0
    status, mp3 = _curl(server, "/v1/text-to-speech/default/stream", {"text": "Hello there."}, tmp_path)
    assert status == 200 and (mp3[:3] == b"ID3" or mp3[0] == 0xFF)  # mp3_44100_128 by default
    status, body = _curl(server, "/v1/text-to-speech/nobody", {"text": "Hello."}, tmp_path)
    assert (
        status in (400, 404) and json.loads(body)["detail"]["code"] == "voice_not_found"
    )  # ElevenLabs' shape
    status, body = _curl(
        server, "/v1/text-to-speech/default?output_format=pcm_1", {"text": "Hello."}, tmp_path
    )
    assert status == 400 and json.loads(body)["detail"]["param"] == "output_format"


def test_cartesia_bytes(server: RunningServer, tmp_path) -> None:
    request = {
        "model_id": "sonic-3",
        "transcript": "Hello there.",
        "voice": {"mode": "id", "id": "default"},
        "output_format": {"container": "wav", "sample_rate": 16000},
    }
    status, wav = _curl(server, "/tts/bytes", request, tmp_path, ("Cartesia-Version: 2025-04-16",))
    assert status == 200 and wav[:4] == b"RIFF" and len(wav) > 8000
    streamed = httpx.post(f"{server.base_url}/tts/bytes", json=request, timeout=120)
    assert streamed.headers.get("transfer-encoding") == "chunked" and streamed.content[:4] == b"RIFF"
    request["output_format"] = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}
    status, ulaw = _curl(server, "/tts/bytes", request, tmp_path)
    assert status == 200 and len(ulaw) > 4000
    request["output_format"] = {"container": "raw", "encoding": "pcm_f32le", "sample_rate": 16000}
    status, body = _curl(server, "/tts/bytes", request, tmp_path)
    assert status == 400 and json.loads(body)["error_code"] == "validation_error"  # Cartesia's shape
