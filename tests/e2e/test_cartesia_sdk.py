"""Cartesia's own Python SDK (cartesia 4.2) against a real uvicorn server (demo checkpoint, two API keys, the file
stores): `client.voices.list()` page by page and whole (the SDK follows `starting_after`), searched and filtered,
`client.voices.get(id)` for a built-in voice and a key's own, and an unknown voice as the SDK raises it, in
Cartesia's error shape; the docs' example (a listed voice's speech through `client.tts.bytes`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, keyed_server

pytestmark = pytest.mark.e2e
cartesia = pytest.importorskip("cartesia")

ALICE, BOB = "alice-cartesia-key", "bob-cartesia-key"


@pytest.fixture(scope="module")
def live(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with keyed_server(demo_model_dir, tmp_path_factory, "cartesia-sdk", [ALICE, BOB]) as running:
        yield running


def test_voices_list_get_and_an_unknown_voice(live: RunningServer) -> None:
    from tests.audio_samples import voiced, wav_bytes

    made = httpx.post(
        f"{live.base_url}/v1/audio/voices",
        headers={"Authorization": f"Bearer {ALICE}"},
        files={"audio_sample": ("ref.wav", wav_bytes(voiced(3.0)), "audio/wav")},
        data={"name": "Zelda Clone"},
        timeout=120,
    )
    assert made.status_code == 201, made.text
    mine = made.json()["id"]
    client = cartesia.Cartesia(api_key=ALICE, base_url=live.base_url, timeout=60)

    every = [v.id for v in client.voices.list(limit=2)]  # the SDK pages with starting_after until the end
    assert "narrator" in every and mine in every and len(every) == len(set(every))
    first = client.voices.list(limit=2)
    assert [v.id for v in first.data] == every[:2] and first.has_next_page()
    assert [v.id for v in first.get_next_page().data] == every[2:4]

    narrator = client.voices.get("narrator")
    assert narrator.name.startswith("Narrator") and (narrator.is_owner, narrator.access) == (False, "public")
    own = client.voices.get(mine)
    assert (own.name, own.is_owner, own.access, own.visibility) == ("Zelda Clone", True, "private", "owner")
    assert [v.id for v in client.voices.list(is_owner=True)] == [mine]
    assert [v.id for v in client.voices.list(q="zelda")] == [mine]
    male = {v.id for v in client.voices.list(gender="masculine", limit=100)}
    assert "male_deep" in male and "female_bright" not in male

    bob = cartesia.Cartesia(api_key=BOB, base_url=live.base_url, timeout=60)
    assert mine not in [v.id for v in bob.voices.list(limit=100)]
    with pytest.raises(cartesia.NotFoundError) as missing:
        bob.voices.get(mine)
    assert missing.value.body["error_code"] == "voice_not_found"  # Cartesia's error shape, not ours
    with pytest.raises(cartesia.BadRequestError):
        client.voices.list(starting_after="nobody")


def test_the_docs_example_speaks_with_a_listed_voice(live: RunningServer) -> None:
    """docs/voice-agents.md's example: a voice from the list, its speech as one WAV file (`generate`: the SDK's
    `bytes` is deprecated), and on the socket through `websocket_base_url`."""
    ws = live.base_url.replace("http://", "ws://", 1)
    client = cartesia.Cartesia(api_key=ALICE, base_url=live.base_url, websocket_base_url=ws, timeout=120)
    voice = {"mode": "id", "id": client.voices.get("narrator").id}
    audio = client.tts.generate(
        model_id="sonic-2",
        transcript="The bridge opened at nine.",
        voice=voice,
        output_format={"container": "wav", "encoding": "pcm_s16le", "sample_rate": 16000},
    ).read()
    assert audio[:4] == b"RIFF" and len(audio) > 16_000
    pcm = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
    with client.tts.websocket_connect() as connection:
        context = connection.context(model_id="sonic-2", voice=voice, output_format=pcm)
        context.push("The bridge opened at nine. ")
        context.no_more_inputs()
        streamed = b"".join(r.audio for r in context.receive() if r.type == "chunk" and r.audio)
    assert len(streamed) > 16_000
