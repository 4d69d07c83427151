"""Generation guards over the wire: a real uvicorn server whose engine misbehaves on purpose
(`python -m bench.standin.serve --fault`), keys and credits in the real PostgreSQL, the request log written there.

- the first generation of each text loops after 40 semantic tokens, the next one is clean: a non-streamed request
  is generated again and says so (`X-Chunks-Retried: 1`); a streamed one (native HTTP, OpenAI, WebSocket) was
  already playing when the loop showed, so it is cut (`chunks_cut` in the WebSocket `done`, the request log)
  and charged only for the characters its sent audio covers;
- every generation stops at once (no speech): the request ends with GENERATION_FAILED in the error envelope (HTTP
  500, the WebSocket `error` event) after TTS_GUARD_MAX_TRIES tries, and no credit is taken.
Each outcome is counted in veena3_tts_guard_trips_total{guard,action} and written to the request-log row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.guards.text_budget import expected_tokens
from services.pipeline.chunk_guards import covered_chars
from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.integration.conftest import create_credit_key
from tests.integration.test_one_request_path import _row_and_balance, synthesis_samples, wait_for_row
from tests.ws_client import speak_once

pytestmark = pytest.mark.integration

TEXT = "The quick brown fox jumps over the lazy dog."
VOICE = "fixed"  # stored global tokens: every try of a text sends the same prompt


def _server(pg_dsn: str, model_dir: Path, tmp: Path, fault: str) -> tuple[RunningServer, str, str]:
    raw, key_id = create_credit_key(pg_dsn, "guards")
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_KEY_BACKEND": "postgres",
        "TTS_DATABASE_URL": pg_dsn,
        "TTS_CREDITS_ENABLED": "true",
        "TTS_REQUEST_LOG_SINK": "postgres",
        "TTS_REQUEST_LOG_SPOOL_DIR": str(tmp),
        "TTS_SR_ENABLED": "false",
        "TTS_WARMUP": "false",
        "TTS_GUARD_MAX_TRIES": "2",
    }
    return start_server(model_dir, tmp / "server.log", env, standin=["--fault", fault]), raw, key_id


@pytest.fixture(scope="module")
def looping(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, str, str]]:
    server, raw, key_id = _server(pg_dsn, demo_model_dir, tmp_path_factory.mktemp("guards-loop"), "loop:40:1")
    try:
        yield server, raw, key_id
    finally:
        stop_server(server)


def trips(server: RunningServer) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["guard"], dict(labels)["action"]): value
        for (name, labels), value in synthesis_samples(server).items()
        if name == "veena3_tts_guard_trips_total"
    }


def test_non_streamed_requests_get_the_retried_audio(looping, pg_dsn: str) -> None:
    server, key, key_id = looping
    auth = {"Authorization": f"Bearer {key}"}
    _, balance = asyncio.run(_row_and_balance(pg_dsn, "-", key_id))
    text = f"{TEXT} Native."
    response = httpx.post(
        f"{server.base_url}/v1/tts/generate",
        headers=auth,
        timeout=120,
        json={"text": text, "speaker": VOICE, "stream": False, "format": "wav"},
    )
    assert response.status_code == 200, response.text
    assert (response.headers["X-Chunks-Retried"], response.headers["X-Chunks-Cut"]) == ("1", "0")
    row, balance_after = wait_for_row(pg_dsn, response.headers["X-Request-ID"], key_id)
    assert (row["status"], row["chunks_retried"], row["chunks_cut"], row["guard_trips"]) == (
        "completed",
        1,
        0,
        "loop:retried",
    )
    assert row["credits_charged"] == balance - balance_after == len(text)

    assert trips(server)[("loop", "retried")] >= 1


def test_streams_already_playing_are_cut_and_charged_for_what_they_sent(looping, pg_dsn: str) -> None:
    server, key, key_id = looping
    auth = {"Authorization": f"Bearer {key}"}
    _, balance = asyncio.run(_row_and_balance(pg_dsn, "-", key_id))
    text = f"{TEXT} Streamed."
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/tts/generate",
        headers=auth,
        timeout=120,
        json={"text": text, "speaker": VOICE, "stream": True, "format": "pcm"},
    ) as r:
        assert r.status_code == 200
        audio = b"".join(r.iter_bytes())
        request_id = r.headers["X-Request-ID"]
    row, balance_after = wait_for_row(pg_dsn, request_id, key_id)
    assert (row["status"], row["chunks_cut"], row["guard_trips"]) == ("completed", 1, "loop:cut")
    # 40 clean tokens and the loop until it was noticed went out; not the whole budget the loop would have run to.
    assert 40 * 320 * 2 <= len(audio) < 400 * 320 * 2
    # Its only chunk was cut: the characters the sent speech covers are charged, the rest given back.
    covered = covered_chars(len(text), expected_tokens(text), len(audio) / 2 / 320, 0.5)
    assert 0 < covered < len(text)
    assert abs(row["credits_charged"] - covered) <= 1 and row["credits_charged"] == balance - balance_after

    # The OpenAI route always streams: the same cut, in its row.
    openai = httpx.post(
        f"{server.base_url}/v1/audio/speech",
        headers=auth,
        timeout=120,
        json={"model": "tts-1", "input": f"{TEXT} OpenAI.", "voice": VOICE, "response_format": "pcm"},
    )
    assert openai.status_code == 200 and openai.content
    row, _ = wait_for_row(pg_dsn, openai.headers["X-Request-ID"], key_id)
    assert (row["chunks_cut"], row["guard_trips"]) == (1, "loop:cut")

    event, ws_audio = speak_once(
        server.base_url,
        auth,
        {"text": f"{TEXT} Socket.", "speaker": VOICE, "format": "pcm", "sample_rate": 16000},
    )
    assert event["type"] == "done", event
    assert (event["chunks_cut"], event["chunks_retried"]) == (1, 0) and ws_audio
    assert trips(server)[("loop", "cut")] >= 3


def test_a_request_whose_every_try_fails_ends_with_the_error_envelope(
    pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server, key, key_id = _server(pg_dsn, demo_model_dir, tmp_path_factory.mktemp("guards-stop"), "stop:0:0")
    auth = {"Authorization": f"Bearer {key}"}
    try:
        _, balance = asyncio.run(_row_and_balance(pg_dsn, "-", key_id))
        response = httpx.post(
            f"{server.base_url}/v1/tts/generate",
            headers=auth,
            timeout=120,
            json={"text": TEXT, "speaker": VOICE, "stream": False},
        )
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == "GENERATION_FAILED" and "all 2 tries" in error["message"]
        row, balance_after = wait_for_row(pg_dsn, response.headers["X-Request-ID"], key_id)
        assert (row["status"], row["error_code"], row["guard_trips"]) == (
            "failed",
            "GENERATION_FAILED",
            "empty:retried,empty:failed",
        )
        assert row["credits_charged"] == 0 and balance_after == balance

        event, audio = speak_once(
            server.base_url, auth, {"text": TEXT, "speaker": VOICE, "format": "pcm", "sample_rate": 16000}
        )
        assert event["type"] == "error" and event["error"]["code"] == "GENERATION_FAILED", event
        assert audio == b""
        assert trips(server)[("empty", "failed")] == 2
    finally:
        stop_server(server)
