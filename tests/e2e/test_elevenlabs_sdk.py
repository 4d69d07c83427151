"""ElevenLabs' own Python SDK (elevenlabs 2.78) against a real uvicorn server (demo checkpoint, two API keys, the file
stores), past its first calls: text-to-speech in the SDK's output formats (each decoded by ffprobe / ffmpeg at the
rate, codec and bit rate its name says), the four text-to-speech and dialogue calls, voices (get, get_all, search
page by page), models (and the OpenAI SDK's models on the same server), pronunciation dictionaries on dialogue, and
each refusal as the SDK raises it, in ElevenLabs' error shape."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (ffmpeg) not installed"),
]
elevenlabs = pytest.importorskip("elevenlabs")
from elevenlabs.core.api_error import ApiError  # noqa: E402 - after the SDK is known to be installed

ALICE, BOB = "alice-sdk-key", "bob-sdk-key"
TEXT = "The bridge opened at nine."
WORD, ALIAS = "Zorblax", "the blue robot"


@pytest.fixture(scope="module")
def live(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        demo_model_dir,
        tmp_path_factory.mktemp("elevenlabs-sdk") / "server.log",
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


@pytest.fixture(scope="module")
def client(live: RunningServer):
    return elevenlabs.ElevenLabs(api_key=ALICE, base_url=live.base_url, timeout=300)


def _probe(data: bytes, tmp_path: Path, *, raw: str | None = None) -> dict:
    """ffprobe's view of `data`: the first audio stream, with the container's duration and bit rate. `raw`: the
    headerless sample format (alaw, mulaw, s16le), read at the rate its name says."""
    path = tmp_path / "audio.bin"
    path.write_bytes(data)
    rate = {"alaw": "8000", "mulaw": "8000"}.get(raw or "", "32000")
    head = ["-f", raw, "-ar", rate] if raw else []
    probe = subprocess.run(
        ["ffprobe", "-v", "error", *head, "-show_entries", "stream=codec_name,sample_rate,channels:format=duration,bit_rate",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    answer = json.loads(probe.stdout)
    return {**answer["streams"][0], **answer["format"]}


def _decoded(data: bytes, tmp_path: Path, *, raw: str | None = None, rate: int = 8000) -> np.ndarray:
    """ffmpeg's decode of `data` as float samples at `rate` (mono)."""
    path = tmp_path / "decode.bin"
    path.write_bytes(data)
    head = ["-f", raw, "-ar", "8000"] if raw else []
    out = subprocess.run(
        ["ffmpeg", "-v", "error", *head, "-i", str(path), "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(out, dtype=np.float32)


def _convert(client, output_format: str, **extra) -> bytes:
    return b"".join(
        client.text_to_speech.convert(
            voice_id="default", text=TEXT, output_format=output_format, seed=7, **extra
        )
    )


@pytest.mark.parametrize(
    ("output_format", "codec", "rate"),
    [("wav_24000", "pcm_s16le", 24000), ("wav_44100", "pcm_s16le", 44100), ("wav_8000", "pcm_s16le", 8000)],
)
def test_wav_formats_are_files_at_their_rate(
    client, tmp_path: Path, output_format: str, codec: str, rate: int
):
    data = _convert(client, output_format)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert int.from_bytes(data[4:8], "little") == len(data) - 8  # a complete file: exact sizes
    probe = _probe(data, tmp_path)
    assert (probe["codec_name"], int(probe["sample_rate"]), probe["channels"]) == (codec, rate, 1)
    assert float(probe["duration"]) == pytest.approx((len(data) - 44) / 2 / rate, abs=0.01)


def test_opus_is_ogg_opus_at_the_asked_bit_rate(client, tmp_path: Path) -> None:
    sizes = {}
    for kbps in (32, 192):
        data = _convert(client, f"opus_48000_{kbps}")
        assert data[:4] == b"OggS"
        probe = _probe(data, tmp_path)
        assert (probe["codec_name"], int(probe["sample_rate"])) == ("opus", 48000)
        sizes[kbps] = int(probe["bit_rate"])
    # The demo model's audio is noise, which takes all the bits it is given (plus Ogg's page overhead).
    assert 20_000 < sizes[32] < 60_000 and sizes[192] > 3 * sizes[32], sizes
    streamed = b"".join(
        client.text_to_speech.stream(voice_id="default", text=TEXT, output_format="opus_48000_64", seed=7)
    )
    assert _probe(streamed, tmp_path)["codec_name"] == "opus"


def test_mp3_at_its_rate_and_bit_rate(client, tmp_path: Path) -> None:
    probe = _probe(_convert(client, "mp3_22050_32"), tmp_path)
    assert (probe["codec_name"], int(probe["sample_rate"])) == ("mp3", 22050)
    assert int(probe["bit_rate"]) == pytest.approx(32_000, rel=0.1)


def test_alaw_and_ulaw_are_the_same_speech_at_8_khz(client, tmp_path: Path) -> None:
    """A-law and mu-law of one seed decode (by ffmpeg) to the same audio within G.711's error, 1 byte a sample."""
    alaw, ulaw = _convert(client, "alaw_8000"), _convert(client, "ulaw_8000")
    assert len(alaw) == len(ulaw) > 800
    assert float(_probe(alaw, tmp_path, raw="alaw")["duration"]) == pytest.approx(len(alaw) / 8000, abs=0.01)
    a, u = _decoded(alaw, tmp_path, raw="alaw"), _decoded(ulaw, tmp_path, raw="mulaw")
    assert len(a) == len(u) == len(alaw)
    assert float(np.corrcoef(a, u)[0, 1]) > 0.99
    pcm = np.frombuffer(_convert(client, "pcm_8000"), dtype="<i2").astype(np.float32) / 32768
    assert float(np.corrcoef(a, pcm)[0, 1]) > 0.99


def test_32_khz_pcm_and_every_other_sdk_format_or_a_400_naming_them(client, live: RunningServer) -> None:
    assert len(_convert(client, "pcm_32000")) % 2 == 0
    with pytest.raises(ApiError) as refused:
        _convert(client, "pcm_12345")
    assert refused.value.status_code == 400
    detail = refused.value.body["detail"]
    assert detail["param"] == "output_format" and detail["code"] == "invalid_parameters"
    for name in ("wav_", "opus_", "alaw_8000", "ulaw_8000", "mp3_", "pcm_"):
        assert name in detail["message"]


def test_timestamps_in_other_formats(client, tmp_path: Path) -> None:
    timed = client.text_to_speech.convert_with_timestamps(
        voice_id="default", text=TEXT, output_format="wav_24000", seed=7
    )
    audio = base64.b64decode(timed.audio_base_64)
    assert int(_probe(audio, tmp_path)["sample_rate"]) == 24000
    assert "".join(timed.alignment.characters).split() == TEXT.split()
    chunks = list(
        client.text_to_speech.stream_with_timestamps(
            voice_id="default", text=TEXT, output_format="alaw_8000", seed=7
        )
    )
    streamed = b"".join(base64.b64decode(c.audio_base_64) for c in chunks if c.audio_base_64)
    assert len(streamed) > 800
    characters = [ch for c in chunks if c.alignment for ch in c.alignment.characters]
    assert "".join(characters).split() == TEXT.split()


def test_voices_get_get_all_and_search_page_by_page(client, live: RunningServer) -> None:
    every = client.voices.get_all().voices
    ids = [v.voice_id for v in every]
    assert "default" in ids and len(ids) >= 2
    assert client.voices.get("default").voice_id == "default"
    seen, token = [], None
    while True:
        page = client.voices.search(page_size=1, next_page_token=token, include_total_count=True)
        assert len(page.voices) == 1 and page.total_count == len(ids)
        seen += [v.voice_id for v in page.voices]
        if not page.has_more:
            assert page.next_page_token is None
            break
        token = page.next_page_token
    assert seen == ids
    by_name = client.voices.search(sort="name", sort_direction="desc", page_size=100)
    names = [v.name.casefold() for v in by_name.voices]
    assert names == sorted(names, reverse=True)
    found = client.voices.search(search=every[0].name.upper())
    assert every[0].voice_id in [v.voice_id for v in found.voices]
    builtin = client.voices.search(voice_type="default", page_size=100).voices
    assert builtin and {v.category for v in builtin} == {"premade"}
    assert client.voices.search(search="no voice has this name").total_count == 0
    male = {v.voice_id for v in client.voices.search(search="male", page_size=100).voices}
    assert "male_deep" in male and "female_bright" not in male  # a word's start, not inside "female"
    picked = client.voices.search(voice_ids=[ids[-1], ids[0]]).voices
    assert [v.voice_id for v in picked] == [ids[0], ids[-1]]
    for call, status, code in (
        (lambda: client.voices.get("nobody"), 404, "voice_not_found"),
        (lambda: client.voices.search(next_page_token="x"), 400, "invalid_parameters"),
        (lambda: client.voices.search(sort="age"), 400, "invalid_parameters"),
        (lambda: client.voices.search(page_size=101), 400, "invalid_parameters"),
        (lambda: client.history.list(), 404, "not_found"),  # not offered: 404 in ElevenLabs' shape
    ):
        with pytest.raises(ApiError) as refused:
            call()
        assert refused.value.status_code == status
        assert refused.value.body["detail"]["code"] == code, refused.value.body


def test_a_library_voice_is_the_keys_own_in_search(client, live: RunningServer) -> None:
    """A voice cloned on our route is ElevenLabs' `cloned` / `personal` voice of its key only, usable by id."""
    from tests.audio_samples import voiced, wav_bytes

    made = httpx.post(
        f"{live.base_url}/v1/audio/voices",
        headers={"xi-api-key": ALICE},
        files={"audio_sample": ("ref.wav", wav_bytes(voiced(3.0)), "audio/wav")},
        data={"name": "Zelda Clone"},
        timeout=120,
    )
    assert made.status_code == 201, made.text
    voice_id = made.json()["id"]
    mine = client.voices.search(voice_type="personal", search="zelda")
    assert [(v.voice_id, v.category, v.is_owner) for v in mine.voices] == [(voice_id, "cloned", True)]
    newest = client.voices.search(sort="created_at_unix", page_size=1).voices[0]
    assert newest.voice_id == voice_id and newest.created_at_unix > 0
    assert client.voices.get(voice_id).name == "Zelda Clone"
    bob = elevenlabs.ElevenLabs(api_key=BOB, base_url=live.base_url, timeout=60)
    assert voice_id not in [v.voice_id for v in bob.voices.search(page_size=100).voices]
    with pytest.raises(ApiError) as hidden:
        bob.voices.get(voice_id)
    assert hidden.value.status_code == 404 and hidden.value.body["detail"]["code"] == "voice_not_found"
    spoken = b"".join(client.text_to_speech.convert(voice_id=voice_id, text="Hi.", output_format="pcm_16000"))
    assert len(spoken) > 0


def test_models_in_each_vendors_shape_on_one_server(client, live: RunningServer) -> None:
    from openai import OpenAI

    models = client.models.list()
    assert [m.model_id for m in models] == ["spark-tts"]
    assert models[0].can_do_text_to_speech and models[0].languages
    openai_ids = [m.id for m in OpenAI(api_key=ALICE, base_url=f"{live.base_url}/v1").models.list()]
    assert "spark-tts" in openai_ids and "tts-1" in openai_ids
    bare = httpx.get(f"{live.base_url}/v1/models", headers={"xi-api-key": ALICE}, timeout=30).json()
    assert isinstance(bare, list) and bare[0]["model_id"] == "spark-tts"


@pytest.fixture(scope="module")
def dictionary(client) -> dict:
    from elevenlabs.pronunciation_dictionaries import (
        BodyAddAPronunciationDictionaryV1PronunciationDictionariesAddFromRulesPostRulesItem_Alias as Alias,
    )

    made = client.pronunciation_dictionaries.create_from_rules(
        name="Robots", rules=[Alias(string_to_replace=WORD, alias=ALIAS)]
    )
    got = client.pronunciation_dictionaries.get(made.id)
    assert got.name == "Robots" and got.latest_version_id == made.version_id
    assert made.id in [d.id for d in client.pronunciation_dictionaries.list().pronunciation_dictionaries]
    return {"pronunciation_dictionary_id": made.id, "version_id": made.version_id}


def test_dictionaries_change_what_a_dialogue_says(client, dictionary: dict) -> None:
    from elevenlabs import DialogueInput, PronunciationDictionaryVersionLocator

    inputs = [
        DialogueInput(text=f"Meet {WORD}.", voice_id="default"),
        DialogueInput(text=f"Hello {WORD}!", voice_id="narrator"),
    ]
    locator = PronunciationDictionaryVersionLocator(**dictionary)

    def spoken(answer) -> str:
        return "".join(answer.normalized_alignment.characters)

    plain = client.text_to_dialogue.convert_with_timestamps(inputs=inputs, output_format="pcm_16000", seed=3)
    assert ALIAS not in spoken(plain)
    with_rules = client.text_to_dialogue.convert_with_timestamps(
        inputs=inputs, output_format="pcm_16000", seed=3, pronunciation_dictionary_locators=[locator]
    )
    assert spoken(with_rules).count(ALIAS) == 2
    # `alignment` is the text with the aliases in (its timings are of the words spoken); each voice segment spans
    # its own input there.
    written = "".join(with_rules.alignment.characters)
    segments = with_rules.voice_segments
    assert [s.voice_id for s in segments] == ["default", "narrator"]
    assert [written[s.character_start_index : s.character_end_index] for s in segments] == [
        f"Meet {ALIAS}.",
        f"Hello {ALIAS}!",
    ]
    audio = b"".join(
        client.text_to_dialogue.convert(
            inputs=inputs, output_format="mp3_44100_128", pronunciation_dictionary_locators=[locator]
        )
    )
    assert audio[:3] == b"ID3" or audio[0] == 0xFF


def test_dialogue_streams(client, dictionary: dict, tmp_path: Path) -> None:
    from elevenlabs import DialogueInput, PronunciationDictionaryVersionLocator

    inputs = [
        DialogueInput(text="Hi there.", voice_id="default"),
        DialogueInput(text=f"I am {WORD}.", voice_id="narrator"),
    ]
    opus = b"".join(client.text_to_dialogue.stream(inputs=inputs, output_format="opus_48000_64", seed=3))
    assert _probe(opus, tmp_path)["codec_name"] == "opus"
    lines = list(
        client.text_to_dialogue.stream_with_timestamps(
            inputs=inputs,
            output_format="ulaw_8000",
            pronunciation_dictionary_locators=[PronunciationDictionaryVersionLocator(**dictionary)],
        )
    )
    spoken = "".join(
        c for line in lines if line.normalized_alignment for c in line.normalized_alignment.characters
    )
    assert ALIAS in spoken
    segments = [s for line in lines for s in line.voice_segments or []]
    assert [s.voice_id for s in segments] == ["default", "narrator"]


SPEECH_ROUTES = [
    f"/v1/{family}{suffix}"
    for family in ("text-to-speech/default", "text-to-dialogue")
    for suffix in ("", "/stream", "/with-timestamps", "/stream/with-timestamps")
]


@pytest.mark.parametrize("path", SPEECH_ROUTES)
def test_every_speech_route_refuses_a_dictionary_it_cannot_use(
    live: RunningServer, dictionary: dict, path: str
) -> None:
    """Another key's dictionary, or one that does not exist: 404 in ElevenLabs' shape before any audio, on each of
    the eight routes that take locators."""
    body = (
        {"inputs": [{"text": f"Hi {WORD}.", "voice_id": "default"}]}
        if "dialogue" in path
        else {"text": f"Hi {WORD}."}
    )
    for key, locator in ((BOB, dictionary), (ALICE, {"pronunciation_dictionary_id": "pd_missing"})):
        answer = httpx.post(
            f"{live.base_url}{path}?output_format=pcm_16000",
            json={**body, "pronunciation_dictionary_locators": [locator]},
            headers={"xi-api-key": key},
            timeout=60,
        )
        assert answer.status_code == 404, answer.text
        detail = answer.json()["detail"]
        assert detail["type"] == "not_found" and detail["param"] == "pronunciation_dictionary_locators"


async def _socket_refusal(live: RunningServer, locator: dict) -> dict:
    url = live.base_url.replace("http", "ws", 1) + "/v1/text-to-speech/default/multi-stream-input"
    async with connect(f"{url}?output_format=pcm_16000", additional_headers={"xi-api-key": BOB}) as ws:
        opener = {"text": " ", "context_id": "c", "pronunciation_dictionary_locators": [locator]}
        await ws.send(json.dumps(opener))
        await ws.send(json.dumps({"text": f"Hi {WORD}. ", "context_id": "c", "flush": True}))
        return json.loads(await asyncio.wait_for(ws.recv(), 60))


def test_a_socket_refuses_a_dictionary_it_cannot_use(live: RunningServer, dictionary: dict) -> None:
    """The sockets take locators on the message that opens a context: another key's is refused in-band."""
    refusal = asyncio.run(_socket_refusal(live, dictionary))
    assert refusal["contextId"] == "c" and refusal["error"].startswith("not_found: "), refusal
