"""ElevenLabs' `enable_ssml_parsing`: the SSML subset (processing/ssml.py) and, through the real app's WebSocket, a
`<break>` that is real silence of its length in the audio; with the flag off the text is read as before.

The app runs the demo checkpoint with greedy decoding and no guards, so the same text gives the same speech tokens:
the audio with a break is longer by exactly the break."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import create_app
from processing.ssml import MAX_BREAK_S, parse_ssml
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal

RATE = 16_000


def test_breaks_become_pauses_and_other_tags_their_text() -> None:
    assert parse_ssml('Hello <break time="1.5s"/> there.') == ["Hello ", 1.5, " there."]
    assert parse_ssml("A<break time='250ms' />B") == ["A", 0.25, "B"]
    assert parse_ssml('Wait <break time="10s"/>') == ["Wait ", MAX_BREAK_S]  # ElevenLabs' cap
    assert parse_ssml('<break strength="strong"/>Go<break/>') == [0.75, "Go", 0.5]
    assert parse_ssml('<break time="2s"/><break time="2s"/>x') == [MAX_BREAK_S, "x"]  # one silence, capped
    assert parse_ssml('<speak><prosody rate="slow">Say <emphasis>this</emphasis></prosody></speak>') == [
        "Say this"]
    assert parse_ssml('I say <phoneme alphabet="cmu-arpabet" ph="T AH0 M EY1 T OW2">tomato</phoneme>.') == [
        "I say tomato."]
    assert parse_ssml("Fish &amp; chips, 3 &lt; 4") == ["Fish & chips, 3 < 4"]
    assert parse_ssml('<break time="0s"/>') == []
    assert parse_ssml("no tags at all") == ["no tags at all"]


@pytest.fixture(scope="module")
def client(demo_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(model_dir=demo_model_dir, auth_enabled=False, warmup=False, log_json=False, sr_enabled=False,
                        default_top_k=1, default_max_tokens=40, guard_mode="off")
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        yield test_client


def _speak(client: TestClient, text: str, *, ssml: bool) -> tuple[np.ndarray, str]:
    """One ElevenLabs stream-input context: the audio (16 kHz PCM) and the text its alignment covers."""
    path = (f"/v1/text-to-speech/default/stream-input?output_format=pcm_{RATE}"
            f"&enable_ssml_parsing={'true' if ssml else 'false'}")
    audio, chars = b"", []
    with client.websocket_connect(path) as ws:
        for message in ({"text": " "}, {"text": text}, {"text": ""}):
            ws.send_text(json.dumps(message))
        while not (message := json.loads(ws.receive_text())).get("isFinal"):
            assert "error" not in message, message
            audio += base64.b64decode(message["audio"])
            chars += (message.get("alignment") or {}).get("chars", [])
    return np.frombuffer(audio, "<i2"), "".join(chars)


def _longest_zero_run(samples: np.ndarray) -> int:
    longest = run = 0
    for value in samples:
        run = run + 1 if value == 0 else 0
        longest = max(longest, run)
    return longest


def test_an_ssml_break_is_silence_of_its_length_and_only_with_the_flag(client: TestClient) -> None:
    first, second = "Hello there my friend.", "How are you today?"
    plain, _ = _speak(client, f"{first} {second}", ssml=True)
    broken, spoken = _speak(client, f'{first} <break time="1.5s"/> {second}', ssml=True)
    assert broken.size - plain.size == int(1.5 * RATE)  # the same speech, and 1.5 s of silence more
    assert _longest_zero_run(broken) >= int(1.4 * RATE) > _longest_zero_run(plain)  # the crossfade takes a little
    assert "<" not in spoken and "break" not in spoken
    one_cut, _ = _speak(client, f"{first} {second} ", ssml=True)  # a space after "?": one cut of both sentences
    trailing, _ = _speak(client, f'{first} {second} <break time="0.5s"/>', ssml=True)  # after the last words too
    assert trailing.size - one_cut.size == int(0.5 * RATE) and not trailing[-int(0.45 * RATE):].any()
    phoneme, spoken = _speak(client, f'{first} <phoneme alphabet="ipa" ph="x">{second}</phoneme>', ssml=True)
    assert phoneme.size == plain.size and "phoneme" not in spoken  # read as its text
    # enable_ssml_parsing=false: the tag is text for the normaliser, as before; no silence is made
    audio, spoken = _speak(client, f'{first} <break time="1.5s"/> {second}', ssml=False)
    assert _longest_zero_run(audio) < int(0.5 * RATE) and "<break" in spoken
