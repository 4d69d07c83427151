"""One price rule for audio (docs/api/credits.md, "One price for audio"): a charged request pays at least a floor
per second of the audio it delivered, so markup (SSML breaks, slow speed, pauses) cannot make audio much cheaper per
credit than plain speech; plain speech stays at its character price. The books still balance."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import create_app
from core.guards import speech_seconds
from services.access import AccessServices, Authenticator, StaticKeyStore
from services.deployment.runtime import ModelRuntime
from services.usage.credits import AUDIO_RATIO, MIN_CREDITS_PER_AUDIO_SECOND, audio_floor_credits
from services.usage.request_log import RequestLogger
from shared.settings import Settings
from tests.conftest import wait_in_portal
from tests.unit.api.test_ws_endings import Rows

SENTENCE = "The quick brown fox jumps over the lazy dog, and everyone was happy to be outside."


def test_plain_speech_pays_its_characters_and_stretched_audio_pays_its_time() -> None:
    chars, expected = len(SENTENCE), speech_seconds(SENTENCE)
    assert audio_floor_credits(expected, chars, expected) < chars  # plain speech: the floor does not bind
    assert (
        audio_floor_credits(AUDIO_RATIO * expected, chars, expected) == chars
    )  # up to the ratio, still its text
    # Four times slower (speed 0.25) or padded with silence: audio per credit stays within the ratio of plain speech.
    for audio in (4 * expected, expected + 30.0):
        charged = audio_floor_credits(audio, chars, expected)
        assert audio / charged <= AUDIO_RATIO * expected / chars + 1e-9
    # No text to speak (breaks around punctuation): every second still costs the least rate.
    assert audio_floor_credits(3.0, 0, 0.0) == int(3.0 * MIN_CREDITS_PER_AUDIO_SECOND)
    assert audio_floor_credits(0.0, chars, expected) == 0


INITIAL = 100_000
RATE = 16000


@pytest.fixture(scope="module")
def app(demo_model_dir: Path) -> Iterator[tuple[TestClient, StaticKeyStore, Rows]]:
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
        default_max_tokens=40,
        guard_mode="off",
    )
    store, rows = StaticKeyStore(), Rows()
    access = AccessServices(
        settings,
        authenticator=Authenticator(store, ttl_s=30.0),
        request_logger=RequestLogger(rows, flush_s=0.05),
    )  # type: ignore[arg-type]
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime, access=access)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        yield client, store, rows


def _speak(client: TestClient, key: str, text: str) -> int:
    """One ElevenLabs stream-input context with SSML; the samples of audio received."""
    path = (
        f"/v1/text-to-speech/default/stream-input?output_format=pcm_{RATE}&enable_ssml_parsing=true"
        f"&xi_api_key={key}"
    )
    audio = b""
    with client.websocket_connect(path) as ws:
        for message in ({"text": " "}, {"text": text}, {"text": ""}):
            ws.send_text(json.dumps(message))
        while not (message := json.loads(ws.receive_text())).get("isFinal"):
            assert "error" not in message, message
            audio += base64.b64decode(message["audio"])
    return np.frombuffer(audio, "<i2").size


def test_silence_between_letters_pays_for_its_seconds_and_the_books_balance(app) -> None:  # noqa: ANN001
    client, store, rows = app
    store.add_plain_key("price-key", key_id="price", credit_balance=INITIAL)
    samples = _speak(client, "price-key", 'A <break time="3s"/> b <break time="3s"/> c.')
    seconds = samples / RATE
    assert seconds > 6.0
    wait_in_portal(client, lambda: bool(rows.of("price")), timeout_s=30)
    [row] = rows.of("price")
    # Five characters of text; about 6.5 s of audio: charged for the seconds, not the letters.
    assert row.credits_charged >= int(seconds * MIN_CREDITS_PER_AUDIO_SECOND) > 5

    async def balance() -> int:
        return (await store.get_by_hash(store._hash_by_id["price"])).credit_balance  # type: ignore[return-value]

    assert INITIAL - client.portal.call(balance) == row.credits_charged
