"""Pronunciation dictionaries and SSML against a real server (demo checkpoint, two API keys, the file store): a
dictionary created over HTTP changes what is said (ElevenLabs' `normalized_alignment`, and on a socket opened with
its locator), another key can neither see nor use it; SSML `<sub>` and `<say-as>` change the native and OpenAI
routes' normalised words; a `<break>` is silence on every route."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e
ALICE, BOB = "alice-pronunciation-key", "bob-pronunciation-key"
WORD, ALIAS = "Zorblax", "the blue robot"
PAUSE = '<break time="2s"/>'


@pytest.fixture(scope="module")
def keyed_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        demo_model_dir,
        tmp_path_factory.mktemp("pronunciation") / "server.log",
        {
            "TTS_AUTH_ENABLED": "true",
            "TTS_API_KEYS": f"{ALICE},{BOB}",
            "TTS_VOICE_DIR": str(tmp_path_factory.mktemp("voices")),
        },
    )
    try:
        yield running
    finally:
        stop_server(running)


def _post(server: RunningServer, path: str, key: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", headers={"xi-api-key": key}, timeout=300, **kwargs)


def _get(server: RunningServer, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}{path}", headers={"xi-api-key": key}, timeout=30)


@pytest.fixture(scope="module")
def dictionary(keyed_server: RunningServer) -> dict:
    body = {"name": "Robots", "rules": [{"type": "alias", "string_to_replace": WORD, "alias": ALIAS}]}
    answer = _post(keyed_server, "/v1/pronunciation-dictionaries/add-from-rules", ALICE, json=body)
    assert answer.status_code == 200, answer.text
    created = answer.json()
    assert created["name"] == "Robots" and created["version_rules_num"] == 1
    return created


def _spoken(alignment: dict) -> str:
    return "".join(alignment["characters"])


def test_a_dictionary_changes_what_is_said(keyed_server: RunningServer, dictionary: dict) -> None:
    url = "/v1/text-to-speech/default/with-timestamps?output_format=pcm_16000"
    text = f"Hello {WORD}."
    locator = {"pronunciation_dictionary_id": dictionary["id"], "version_id": dictionary["version_id"]}
    plain = _post(keyed_server, url, ALICE, json={"text": text}).json()
    assert ALIAS not in _spoken(plain["normalized_alignment"])
    with_rules = _post(
        keyed_server, url, ALICE, json={"text": text, "pronunciation_dictionary_locators": [locator]}
    )
    assert with_rules.status_code == 200, with_rules.text
    assert ALIAS in _spoken(with_rules.json()["normalized_alignment"])


def test_another_key_can_neither_see_nor_use_it(keyed_server: RunningServer, dictionary: dict) -> None:
    listed = _get(keyed_server, "/v1/pronunciation-dictionaries", ALICE).json()["pronunciation_dictionaries"]
    assert [d["id"] for d in listed] == [dictionary["id"]]
    assert (
        _get(keyed_server, "/v1/pronunciation-dictionaries", BOB).json()["pronunciation_dictionaries"] == []
    )
    hidden = _get(keyed_server, f"/v1/pronunciation-dictionaries/{dictionary['id']}", BOB)
    assert hidden.status_code == 404 and hidden.json()["detail"]["code"] == "not_found"
    used = _post(
        keyed_server,
        "/v1/text-to-speech/default?output_format=pcm_16000",
        BOB,
        json={
            "text": "Hi.",
            "pronunciation_dictionary_locators": [{"pronunciation_dictionary_id": dictionary["id"]}],
        },
    )
    assert used.status_code == 404 and used.json()["detail"]["type"] == "not_found"
    mine = _get(keyed_server, f"/v1/pronunciation-dictionaries/{dictionary['id']}", ALICE).json()
    assert mine["latest_version_id"] == dictionary["version_id"] and mine["rules"][0]["alias"] == ALIAS
    pls = _get(
        keyed_server,
        f"/v1/pronunciation-dictionaries/{dictionary['id']}/{dictionary['version_id']}/download",
        ALICE,
    )
    assert pls.status_code == 200 and f"<grapheme>{WORD}</grapheme>" in pls.text


def test_pls_files_and_refused_phonemes(keyed_server: RunningServer) -> None:
    pls = (
        '<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon">'
        "<lexeme><grapheme>UN</grapheme><alias>United Nations</alias></lexeme></lexicon>"
    )
    made = _post(
        keyed_server,
        "/v1/pronunciation-dictionaries/add-from-file",
        BOB,
        data={"name": "Orgs"},
        files={"file": ("orgs.pls", pls.encode(), "application/pls+xml")},
    )
    assert made.status_code == 200, made.text
    assert made.json()["version_rules_num"] == 1
    rules = [{"type": "phoneme", "string_to_replace": "tomato", "phoneme": "təˈmɑːtoʊ", "alphabet": "ipa"}]
    refused = _post(
        keyed_server, "/v1/pronunciation-dictionaries/add-from-rules", BOB, json={"name": "x", "rules": rules}
    )
    assert refused.status_code == 400 and "alias" in refused.json()["detail"]["message"]
    deleted = httpx.delete(
        f"{keyed_server.base_url}/v1/pronunciation-dictionaries/{made.json()['id']}",
        headers={"xi-api-key": BOB},
    )
    assert deleted.status_code == 200


async def _socket_context(
    server: RunningServer, opener: dict, text: str, query: str = ""
) -> tuple[bytes, str]:
    """One ElevenLabs context: its PCM (16 kHz) and what its normalised alignment says."""
    url = server.base_url.replace("http", "ws", 1)
    url += f"/v1/text-to-speech/default/multi-stream-input?output_format=pcm_16000&xi_api_key={ALICE}{query}"
    async with connect(url, max_size=None, open_timeout=20) as ws:
        await ws.send(json.dumps({"text": " ", "context_id": "a", **opener}))
        await ws.send(json.dumps({"text": text, "context_id": "a"}))
        await ws.send(json.dumps({"context_id": "a", "flush": True, "close_context": True}))
        audio, spoken = b"", ""
        while not (message := json.loads(await asyncio.wait_for(ws.recv(), 120))).get("isFinal"):
            assert "error" not in message, message
            audio += base64.b64decode(message["audio"])
            if message.get("normalizedAlignment"):
                spoken += "".join(message["normalizedAlignment"]["chars"])
        await ws.send(json.dumps({"close_socket": True}))
    return audio, spoken


def test_a_socket_opened_with_locators_uses_the_dictionary(
    keyed_server: RunningServer, dictionary: dict
) -> None:
    opener = {"pronunciation_dictionary_locators": [{"pronunciation_dictionary_id": dictionary["id"]}]}
    _, spoken = asyncio.run(_socket_context(keyed_server, opener, f"Say {WORD} now. "))
    assert ALIAS in spoken


SSML = '<speak>I have <say-as interpret-as="cardinal">12</say-as> apples from <sub alias="World Wide Web">WWW</sub>.</speak>'


def test_ssml_on_the_native_route_changes_normalized_words(keyed_server: RunningServer) -> None:
    body = {"text": SSML, "format": "pcm", "max_tokens": 60, "seed": 5, "timestamps": "word"}
    answer = _post(keyed_server, "/v1/tts/generate", ALICE, json=body)
    assert answer.status_code == 200, answer.text
    spoken = [w["text"].strip(".,") for w in answer.json()["normalized_words"]]
    assert "twelve" in spoken and "World" in spoken and not any("<" in w for w in spoken)


def test_ssml_on_the_openai_route_changes_normalized_words(keyed_server: RunningServer) -> None:
    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": SSML,
        "response_format": "pcm",
        "stream_format": "sse",
        "timestamps": "word",
    }
    words: list[str] = []
    with httpx.stream(
        "POST",
        f"{keyed_server.base_url}/v1/audio/speech",
        json=body,
        headers={"Authorization": f"Bearer {ALICE}"},
        timeout=300,
    ) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line.removeprefix("data:").strip())
                if event["type"] == "speech.timestamps":
                    words += [w["text"] for w in event["words"]]
    assert words and not any("<" in w for w in words)
    normalized = _post(
        keyed_server,
        "/v1/tts/normalize",
        ALICE,
        json={"text": SSML, "lexicon": [{"text": "apples", "alias": "pears"}]},
    ).json()["normalized"]
    assert normalized == "I have twelve pears from World Wide Web."


def _longest_silence_s(pcm: bytes, rate: int, dtype: str = "<i2") -> float:
    samples = np.abs(np.frombuffer(pcm, dtype=dtype).astype(np.float64))
    quiet = samples <= (samples.max() * 1e-3 if samples.size else 0)
    longest = run = 0
    for value in quiet:
        run = run + 1 if value else 0
        longest = max(longest, run)
    return longest / rate


def test_a_break_is_silence_on_every_http_route(keyed_server: RunningServer) -> None:
    text = f"Hello. {PAUSE} World."
    native = _post(
        keyed_server, "/v1/tts/generate", ALICE, json={"text": text, "format": "pcm", "max_tokens": 40}
    )
    assert native.status_code == 200 and _longest_silence_s(native.content, 16000) >= 1.8
    openai = _post(
        keyed_server,
        "/v1/audio/speech",
        ALICE,
        json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm", "max_tokens": 40},
    )
    assert openai.status_code == 200 and _longest_silence_s(openai.content, 24000) >= 1.8
    eleven = _post(
        keyed_server, "/v1/text-to-speech/default?output_format=pcm_16000", ALICE, json={"text": text}
    )
    assert eleven.status_code == 200 and _longest_silence_s(eleven.content, 16000) >= 1.8
    cartesia = _post(
        keyed_server,
        "/tts/bytes",
        ALICE,
        json={
            "model_id": "sonic-2",
            "transcript": text,
            "voice": {"mode": "id", "id": "default"},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        },
    )
    assert cartesia.status_code == 200, cartesia.text
    assert _longest_silence_s(cartesia.content, 16000) >= 1.8


def test_a_break_is_silence_on_the_sockets(keyed_server: RunningServer) -> None:
    audio, _ = asyncio.run(
        _socket_context(keyed_server, {}, f"Hello. {PAUSE} World. ", "&enable_ssml_parsing=true")
    )
    assert _longest_silence_s(audio, 16000) >= 1.8
    audio = asyncio.run(_cartesia_context(keyed_server, f"Hello. {PAUSE} World."))
    assert _longest_silence_s(audio, 16000) >= 1.8


async def _cartesia_context(server: RunningServer, transcript: str) -> bytes:
    url = (
        server.base_url.replace("http", "ws", 1)
        + f"/tts/websocket?api_key={ALICE}&cartesia_version=2025-04-16"
    )
    async with connect(url, max_size=None, open_timeout=20) as ws:
        await ws.send(
            json.dumps(
                {
                    "context_id": "c",
                    "model_id": "sonic-2",
                    "transcript": transcript,
                    "voice": {"mode": "id", "id": "default"},
                    "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
                    "continue": False,
                }
            )
        )
        audio = b""
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 120))
            assert message.get("type") != "error", message
            if message.get("type") == "chunk":
                audio += base64.b64decode(message["data"])
            if message.get("done"):
                return audio
