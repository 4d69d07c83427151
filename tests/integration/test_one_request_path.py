"""One request path for every transport: the same request, sent over native HTTP, OpenAI bytes, OpenAI SSE, the
WebSocket, the ElevenLabs and Cartesia WebSocket dialects and their timed HTTP routes (ElevenLabs
`stream/with-timestamps`, Cartesia `/tts/sse`), is counted, logged, recorded and charged the same way.

A real uvicorn server with the demo model, keys and credits in the real PostgreSQL, the request log written to
PostgreSQL, JSON logs read from the server's output. For each transport the test compares:
- the synthesis metrics that moved (`/metrics` before and after; HTTP-level route metrics excluded);
- the lifecycle log events of the request, in order;
- the request-log row (everything but ids and timings);
- the credits taken from the key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect

from services.pipeline.text_plan import plan_text
from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.integration.conftest import create_credit_key
from tests.ws_client import speak_once

pytestmark = pytest.mark.integration

# Normalisation lengthens it ("1,000" -> "one thousand"): every transport must charge the normalised length.
TEXT = "I owe 1,000."
VOICE = "fixed"  # a voice with stored global tokens
RATE = 24_000  # what the OpenAI route answers; the other transports ask for it
# Timings and ids differ between any two requests; everything else in the row must not.
ROW_FIELDS = (
    "key_id",
    "speaker",
    "stream",
    "format",
    "sample_rate",
    "temperature",
    "top_k",
    "top_p",
    "max_tokens",
    "repetition_penalty",
    "seed",
    "text_length",
    "text_chunked",
    "status",
    "error_code",
    "credits_charged",
)
# Synthesis families. Excluded: the HTTP-level route metrics (veena3_tts_http_*, rightly different per route),
# the request-log writer's and limiter's own, per-stage work timings (how many decode calls a stream takes
# depends on how the engine's deltas happen to group, not on the request), and the codec scheduler's and
# admission's device figures (calls, batch rows, waits, busy share, device seconds by work class: the same timing,
# shared by every stream).
EXCLUDED_PREFIXES = (
    "veena3_tts_http_",
    "veena3_tts_request_log_",
    "veena3_tts_rate_limit",
    "veena3_tts_stage_seconds",
    "veena3_tts_codec_scheduler_",
    "veena3_tts_admission_",
    "veena3_tts_device_seconds",
)


@pytest.fixture(scope="module")
def server_and_key(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, str, str]]:
    raw, key_id = create_credit_key(pg_dsn, "one-path")
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_KEY_BACKEND": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_CREDITS_ENABLED": "true",
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_REQUEST_LOG_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
        "TTS_LOG_JSON": "true",
        "TTS_LOG_LEVEL": "INFO",
        "TTS_SR_ENABLED": "false",
        # Greedy decoding: every transport's request generates the same tokens, so even token and chunk counts
        # must agree (the OpenAI route has no sampling fields; the deployment's defaults apply everywhere).
        "TTS_DEFAULT_TEMPERATURE": "0",
        "TTS_DEFAULT_MAX_TOKENS": "100",
    }
    server = start_server(demo_model_dir, tmp_path_factory.mktemp("one-path") / "server.log", env)
    try:
        yield server, raw, key_id
    finally:
        stop_server(server)


def synthesis_samples(server: RunningServer) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("veena3_tts_") and not sample.name.startswith(EXCLUDED_PREFIXES):
                # Histograms: which label sets were observed (counts), not the observed values (timings).
                if sample.name.endswith(("_bucket", "_sum")) or sample.name.endswith("_created"):
                    continue
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def moved(before: dict, after: dict) -> dict[tuple[str, tuple], float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


# ------------------------------------------------------------------------------------------------ transports
def native_http(server: RunningServer, key: str) -> str:
    body = {"text": TEXT, "speaker": VOICE, "stream": True, "format": "pcm", "sample_rate": RATE}
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/tts/generate",
        json=body,
        timeout=120,
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        assert response.status_code == 200, response.read()
        assert b"".join(response.iter_bytes())
        return response.headers["X-Request-ID"]


def openai_bytes(server: RunningServer, key: str) -> str:
    body = {"model": "tts-1", "input": TEXT, "voice": VOICE, "response_format": "pcm"}
    response = httpx.post(
        f"{server.base_url}/v1/audio/speech",
        json=body,
        timeout=120,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200 and response.content, response.text
    return response.headers["X-Request-ID"]


def openai_sse(server: RunningServer, key: str) -> str:
    body = {"model": "tts-1", "input": TEXT, "voice": VOICE, "response_format": "pcm", "stream_format": "sse"}
    response = httpx.post(
        f"{server.base_url}/v1/audio/speech",
        json=body,
        timeout=120,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    assert b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    return response.headers["X-Request-ID"]


def websocket(server: RunningServer, key: str) -> str:
    event, audio = speak_once(
        server.base_url,
        {"Authorization": f"Bearer {key}"},
        {"text": TEXT, "speaker": VOICE, "format": "pcm", "sample_rate": RATE},
    )
    assert event["type"] == "done", event
    assert audio
    return event["request_id"]


def _dialect(server: RunningServer, path: str, headers: dict[str, str], messages: list[dict]) -> str:
    """One context on a dialect's socket; its request id is the connection's X-Request-ID + "-u1"."""

    async def run() -> str:
        async with connect(
            server.base_url.replace("http://", "ws://") + path, additional_headers=headers, max_size=None
        ) as ws:
            for message in messages:
                await ws.send(json.dumps(message))
            audio = b""
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 120))
                assert not event.get("error"), event
                audio += base64.b64decode(event.get("audio") or event.get("data") or "")
                if event.get("isFinal") or event.get("type") == "done":
                    assert audio
                    return ws.response.headers["x-request-id"] + "-u1"

    return asyncio.run(run())


def elevenlabs(server: RunningServer, key: str) -> str:
    return _dialect(
        server,
        f"/v1/text-to-speech/{VOICE}/multi-stream-input?output_format=pcm_{RATE}",
        {"xi-api-key": key},
        [
            {"text": " ", "context_id": "c"},
            {"text": TEXT, "context_id": "c"},
            {"context_id": "c", "flush": True, "close_context": True},
        ],
    )


def cartesia(server: RunningServer, key: str) -> str:
    return _dialect(
        server,
        "/tts/websocket",
        {"X-API-Key": key, "Cartesia-Version": "2025-04-16"},
        [
            {
                "context_id": "c",
                "transcript": TEXT,
                "continue": False,
                "voice": {"mode": "id", "id": VOICE},
                "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE},
            }
        ],
    )


def elevenlabs_timed(server: RunningServer, key: str) -> str:
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/text-to-speech/{VOICE}/stream/with-timestamps",
        params={"output_format": f"pcm_{RATE}"},
        json={"text": TEXT},
        headers={"xi-api-key": key},
        timeout=120,
    ) as response:
        assert response.status_code == 200, response.read()
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert b"".join(base64.b64decode(line["audio_base64"]) for line in lines)
    return response.headers["X-Request-ID"]


def cartesia_sse(server: RunningServer, key: str) -> str:
    body = {
        "transcript": TEXT,
        "voice": {"mode": "id", "id": VOICE},
        "add_timestamps": True,
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE},
    }
    response = httpx.post(f"{server.base_url}/tts/sse", json=body, headers={"X-API-Key": key}, timeout=120)
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "done" and any(e["type"] == "chunk" for e in events)
    return response.headers["X-Request-ID"]


TRANSPORTS = {
    "http": native_http,
    "openai": openai_bytes,
    "sse": openai_sse,
    "websocket": websocket,
    "elevenlabs": elevenlabs,
    "cartesia": cartesia,
    "elevenlabs_timed": elevenlabs_timed,
    "cartesia_sse": cartesia_sse,
}


# ------------------------------------------------------------------------------------------------ evidence
async def _row_and_balance(dsn: str, request_id: str, key_id: str) -> tuple[dict[str, Any] | None, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM tts_requests WHERE request_id = $1", request_id)
        balance = await conn.fetchval("SELECT credit_balance FROM api_keys WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    return (None if row is None else dict(row)), balance


def wait_for_row(dsn: str, request_id: str, key_id: str) -> tuple[dict[str, Any], int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row, balance = asyncio.run(_row_and_balance(dsn, request_id, key_id))
        if row is not None:
            return row, balance
        time.sleep(0.2)
    raise AssertionError(f"no request-log row for {request_id}")


def lifecycle_events(log_path: Path, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The request's accounting log lines: (event, the fields every transport must log alike)."""
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("request_id") != request_id or entry.get("logger") != "services.usage.accounting":
            continue
        same = {
            k: entry.get(k)
            for k in (
                "status",
                "error_code",
                "speaker",
                "format",
                "sample_rate",
                "stream",
                "text_length",
                "text_chunks",
                "key_id",
            )
            if k in entry
        }
        events.append((entry["event"], same))
    return events


CADENCE_COUNTERS = frozenset(
    {"veena3_tts_chunk_interval_seconds_count", "veena3_tts_chunk_jitter_seconds_count"}
)


def test_the_same_request_is_accounted_alike_on_every_transport(server_and_key, pg_dsn: str) -> None:
    server, key, key_id = server_and_key
    seen: dict[str, dict[str, Any]] = {}
    _, balance = asyncio.run(_row_and_balance(pg_dsn, "-", key_id))
    for name, send in TRANSPORTS.items():
        before = synthesis_samples(server)
        request_id = send(server, key)
        row, balance_after = wait_for_row(pg_dsn, request_id, key_id)
        time.sleep(0.3)  # the settle task has written the row; the log line before it is flushed too
        seen[name] = {
            "metrics": moved(before, synthesis_samples(server)),
            "events": lifecycle_events(server.log_path, request_id),
            "row": {k: row[k] for k in ROW_FIELDS},
            "charged": balance - balance_after,
        }
        balance = balance_after

    reference = seen["http"]
    assert [e for e, _ in reference["events"]] == ["request_received", "first_audio", "request_completed"]
    spoken = len(plan_text(TEXT, normalize=True, chunking=True, threshold=220, target=170).text)
    assert spoken > len(TEXT)
    assert reference["row"]["status"] == "completed" and reference["row"]["credits_charged"] == spoken
    assert reference["charged"] == spoken
    assert any(
        name == "veena3_tts_requests_total"
        and dict(labels) == {"speaker": VOICE, "stream": "true", "format": "pcm"}
        for name, labels in reference["metrics"]
    )
    for name, evidence in seen.items():
        # How many pieces the audio leaves in (hence chunk intervals and jitter samples) follows when the codec
        # scheduler's calls complete, not the transport: those counters must move, by any count.
        timing = {key for key in reference["metrics"] if key[0] in CADENCE_COUNTERS}
        assert {key for key in evidence["metrics"] if key[0] in CADENCE_COUNTERS} == timing, name
        assert all(evidence["metrics"][key] > 0 for key in timing), name
        assert {k: v for k, v in evidence["metrics"].items() if k not in timing} == {
            k: v for k, v in reference["metrics"].items() if k not in timing
        }, name
        assert evidence["events"] == reference["events"], name
        assert evidence["row"] == reference["row"], name
        assert evidence["charged"] == reference["charged"], name
