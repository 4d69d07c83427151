"""Two-voice dialogue against a real uvicorn server (demo checkpoint): `[voice:NAME]` segments on the native and OpenAI
routes and ElevenLabs' `/v1/text-to-dialogue` routes (with their `voice_segments`). Audio comes back in one piece
(complete and streamed alike), the words as written (markers left out) and as spoken run in order across the
segments, and an unknown voice is refused in each route's own shape, naming it. That each speaker keeps its global tokens for all its segments and the
two differ is checked on the job itself (tests/unit/services/pipeline/test_dialogue_synthesis.py)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from core.align import split_words
from processing.voice_segments import strip_voice_markers
from tests.e2e.conftest import RunningServer

pytestmark = pytest.mark.e2e

RATE = 16_000
# The demo checkpoint's style voices differ only by labels its random weights ignore: the second speaker is its
# prompt-prefix voice, whose global tokens the model also generates.
DIALOGUE = (
    "Did you hear about the 2 bridges? [voice:narrator] No, what happened? "
    "[voice:default] They opened at 9am. [voice:narrator] That is wonderful news!"
)
INPUTS = [
    {"text": "Did you hear about the 2 bridges?", "voice_id": "default"},
    {"text": "No, what happened?", "voice_id": "narrator"},
    {"text": "They opened at 9am.", "voice_id": "default"},
    {"text": "That is wonderful news!", "voice_id": "narrator"},
]


def _in_order(spans: list[tuple[float, float]], duration: float) -> None:
    times = [t for span in spans for t in span]
    assert times == sorted(times), "not monotonic"
    assert times[0] >= 0 and times[-1] <= duration + 1e-3


def test_native_route_speaks_each_segment_in_order(server: RunningServer) -> None:
    body = {"text": DIALOGUE, "format": "pcm", "max_tokens": 60, "seed": 5, "timestamps": "word"}
    response = httpx.post(f"{server.base_url}/v1/tts/generate", json=body, timeout=300)
    assert response.status_code == 200, response.text
    assert response.headers["X-Text-Chunked"] == "true"
    answer = response.json()
    audio = base64.b64decode(answer["audio"])
    duration = len(audio) / 2 / RATE
    assert duration > 0 and answer["audio_seconds"] == pytest.approx(duration, abs=0.01)
    words = answer["words"]
    assert [w["text"] for w in words] == split_words(strip_voice_markers(DIALOGUE))
    _in_order([(w["start"], w["end"]) for w in words], duration)
    spoken = [w["text"].strip("?!,.").lower() for w in answer["normalized_words"]]
    assert "voice" not in spoken and "narrator" not in spoken  # markers are never spoken
    assert spoken.index("two") < spoken.index("happened") < spoken.index("nine") < spoken.index("wonderful")
    _in_order([(w["start"], w["end"]) for w in answer["normalized_words"]], duration)


def test_streamed_dialogue_is_the_complete_one(server: RunningServer) -> None:
    """The same seed streamed and complete: the same audio, so segments join the same way whether or not a client
    plays them as they come (latency "exact": the first chunk's schedule is the complete answer's)."""
    body = {"text": DIALOGUE, "format": "pcm", "max_tokens": 60, "seed": 5, "latency": "exact"}
    complete = httpx.post(f"{server.base_url}/v1/tts/generate", json={**body, "stream": False}, timeout=300)
    assert complete.status_code == 200, complete.text
    with httpx.stream(
        "POST", f"{server.base_url}/v1/tts/generate", json={**body, "stream": True}, timeout=300
    ) as streamed:
        assert streamed.status_code == 200
        audio = b"".join(streamed.iter_bytes())
    assert audio == complete.content and len(audio) > 0


def test_openai_route_takes_segments_and_refuses_an_unknown_voice(server: RunningServer) -> None:
    ok = httpx.post(
        f"{server.base_url}/v1/audio/speech",
        json={"input": DIALOGUE, "voice": "alloy", "response_format": "pcm"},
        timeout=300,
    )
    assert ok.status_code == 200, ok.text
    assert len(ok.content) > 0
    refused = httpx.post(
        f"{server.base_url}/v1/audio/speech",
        json={"input": "Hi. [voice:nobody] Hello.", "voice": "alloy"},
        timeout=60,
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "input" and "'nobody'" in error["message"]  # the marker in the text, not `voice`
    assert "the voice marker '[voice:nobody]' at position 4" in error["message"]


def test_text_to_dialogue_file_and_stream(server: RunningServer) -> None:
    query = "?output_format=pcm_16000"
    body = {"inputs": INPUTS, "seed": 5, "model_id": "eleven_v3", "settings": {"stability": 0.5}}
    complete = httpx.post(f"{server.base_url}/v1/text-to-dialogue{query}", json=body, timeout=300)
    assert complete.status_code == 200, complete.text
    assert len(complete.content) > 0
    with httpx.stream(
        "POST", f"{server.base_url}/v1/text-to-dialogue/stream{query}", json=body, timeout=300
    ) as s:
        assert s.status_code == 200
        streamed = b"".join(s.iter_bytes())
    assert len(streamed) > 0


def test_text_to_dialogue_with_timestamps_in_order(server: RunningServer) -> None:
    body = {"inputs": INPUTS, "seed": 5}
    url = f"{server.base_url}/v1/text-to-dialogue/with-timestamps?output_format=pcm_16000"
    response = httpx.post(url, json=body, timeout=300)
    assert response.status_code == 200, response.text
    answer = response.json()
    duration = len(base64.b64decode(answer["audio_base64"])) / 2 / RATE
    alignment = answer["alignment"]
    written = "".join(alignment["characters"])
    assert written.split() == " ".join(i["text"] for i in INPUTS).split()
    _in_order(
        list(
            zip(
                alignment["character_start_times_seconds"],
                alignment["character_end_times_seconds"],
                strict=True,
            )
        ),
        duration,
    )
    _voice_segments(answer["voice_segments"], written, alignment, duration)
    streamed = httpx.post(
        f"{server.base_url}/v1/text-to-dialogue/stream/with-timestamps?output_format=pcm_16000",
        json=body,
        timeout=300,
    )
    assert streamed.status_code == 200, streamed.text
    lines = [json.loads(line) for line in streamed.text.splitlines() if line]
    characters = [c for line in lines if line["alignment"] for c in line["alignment"]["characters"]]
    assert "".join(characters).split() == written.split()
    stream_alignment = {
        name: [t for line in lines if line["alignment"] for t in line["alignment"][name]]
        for name in ("characters", "character_start_times_seconds", "character_end_times_seconds")
    }
    assert all(isinstance(line["voice_segments"], list) for line in lines)
    streamed_segments = [s for line in lines for s in line["voice_segments"]]
    streamed_seconds = sum(len(base64.b64decode(line["audio_base64"])) for line in lines) / 2 / RATE
    _voice_segments(streamed_segments, "".join(characters), stream_alignment, streamed_seconds)


def _voice_segments(segments: list[dict], written: str, alignment: dict, duration: float) -> None:
    """One segment per input, in order, in its voice, its characters the input's text, its times in order."""
    assert [s["dialogue_input_index"] for s in segments] == list(range(len(INPUTS)))
    assert [s["voice_id"] for s in segments] == [i["voice_id"] for i in INPUTS]
    for segment, spoken in zip(segments, INPUTS, strict=True):
        first, end = segment["character_start_index"], segment["character_end_index"]
        assert written[first:end] == spoken["text"]
        assert segment["start_time_seconds"] == alignment["character_start_times_seconds"][first]
        assert segment["end_time_seconds"] == alignment["character_end_times_seconds"][end - 1]
    _in_order([(s["start_time_seconds"], s["end_time_seconds"]) for s in segments], duration)


@pytest.mark.parametrize(
    ("inputs", "status", "code", "words"),
    [
        (
            [{"text": "Hi.", "voice_id": "default"}, {"text": "Yo.", "voice_id": "nobody"}],
            400,
            "voice_not_found",
            "'nobody'",
        ),
        ([{"text": "Hi.", "voice_id": "nobody"}], 400, "voice_not_found", "'nobody'"),
        ([{"text": "Hi [voice:narrator] yo.", "voice_id": "default"}], 400, None, "own input"),
        ([{"text": "Hi.", "voice_id": "two words"}], 400, None, "cannot be used"),
        ([], 400, None, "inputs"),
    ],
)
def test_text_to_dialogue_refusals_in_elevenlabs_shape(
    server: RunningServer, inputs: list, status: int, code: str | None, words: str
) -> None:
    response = httpx.post(f"{server.base_url}/v1/text-to-dialogue", json={"inputs": inputs}, timeout=60)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in detail["message"] or words == detail.get("param")
    if code is not None:
        assert detail["code"] == code and detail["param"] == "voice_id"
