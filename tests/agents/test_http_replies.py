"""A long reply (~30 s of audio) through the frameworks' own HTTP classes, which open one HTTP request per sentence
(or one for the reply), with their default timeouts, on the stand-in server with admission on (conftest): every
sentence is answered whole, none is refused, nothing fails.

- Pipecat's CartesiaHttpTTSService (`POST /tts/bytes`, read whole: it comes at the device's speed, so no sentence
  stays silent past Pipecat's 3 s quiet-context timeout) and OpenAITTSService (`/v1/audio/speech`, pcm streamed).
- LiveKit's openai.TTS for the whole reply at once, and wrapped in its StreamAdapter (a request per sentence, as an
  agent's LLM streams them).
(Pipecat's ElevenLabsHttpTTSService plays the same reply in test_long_replies.py, its words timed.) A key's next
sentence is admitted like the one it continues (services/device/continuations.py), so a near miss on a busy host
cannot cut a reply between sentences."""

from __future__ import annotations

import pytest
from livekit.agents import APIConnectOptions
from livekit.agents import tts as lk_tts
from livekit.plugins import openai as lk_openai
from pipecat.services.cartesia.tts import CartesiaHttpTTSService
from pipecat.services.openai.tts import OpenAITTSService

from tests.agents.conftest import KEY, Server, check_no_refusals, llm_tokens
from tests.agents.test_long_replies import WordClock, _pipecat

pytestmark = pytest.mark.timeout(600)
# ~30 s of audio in three sentences, the first ~7.5 s: read whole it comes at the device's speed, within Pipecat's
# 3 s quiet-context timeout; paced as if played (at most 3 s ahead) its body took ~4.5 s and Pipecat gave the turn
# up with "completed with no audio". (A sentence much longer than 3 s of the engine's speed is given up either way.)
REPLY = (
    "We left early in the morning, before the sun was up, and drove north along the coast for most of the day. "
    "The road was narrow, and the views were wide, and we stopped twice for coffee, and by the evening we had "
    "reached the little harbour town where my aunt still lives. She had cooked enough food for ten people, and we "
    "ate, we talked, and then we slept for a very long time, as we had not slept in weeks."
)
SENTENCES = 3
WHOLE_S = 20.0  # REPLY is ~30 s of audio on the stand-in: less than this is a reply cut short


def _check_requests(server: Server, mark: int, refusals: float, requests: int) -> None:
    """Every request the reply made completed (none refused, failed or left), and admission refused nothing."""
    check_no_refusals(server, mark, refusals)
    completed = server.events(mark, "request_completed")
    others = [e for name in ("request_failed", "client_disconnected") for e in server.events(mark, name)]
    assert len(completed) == requests and not others, (len(completed), others)
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("service", ["cartesia_http", "openai"])
async def test_pipecat_http_services_play_a_long_reply_whole(server: Server, service: str) -> None:
    mark, refusals = server.mark(), server.admission_refusals()
    if service == "cartesia_http":
        tts: object = CartesiaHttpTTSService(
            api_key=KEY,
            base_url=server.http,
            sample_rate=16000,
            settings=CartesiaHttpTTSService.Settings(voice="default"),
        )
    else:
        tts = OpenAITTSService(api_key=KEY, base_url=f"{server.http}/v1", sample_rate=24000)
    clock: WordClock = await _pipecat(tts, REPLY)  # no ErrorFrame
    print(service, "audio s", round(clock.audio_s, 2))
    assert clock.audio_s > WHOLE_S
    _check_requests(server, mark, refusals, SENTENCES)


@pytest.mark.parametrize("adapted", [False, True], ids=["whole", "stream_adapter"])
async def test_livekit_openai_plays_a_long_reply_whole(server: Server, adapted: bool) -> None:
    mark, refusals = server.mark(), server.admission_refusals()
    openai_tts = lk_openai.TTS(api_key=KEY, base_url=f"{server.http}/v1")  # its defaults: SSE, mp3
    audio_s = 0.0
    if adapted:
        adapter = lk_tts.StreamAdapter(tts=openai_tts)
        stream = adapter.stream(conn_options=APIConnectOptions(max_retry=0))
        for token in llm_tokens(REPLY):
            stream.push_text(token)
        stream.end_input()
        async for event in stream:
            audio_s += event.frame.duration
        await stream.aclose()
        await adapter.aclose()
    else:
        async for event in openai_tts.synthesize(REPLY, conn_options=APIConnectOptions(max_retry=0)):
            audio_s += event.frame.duration
    await openai_tts.aclose()
    print("adapted" if adapted else "whole", "audio s", round(audio_s, 2))
    assert audio_s > WHOLE_S
    _check_requests(server, mark, refusals, SENTENCES if adapted else 1)
