"""Pipecat's own ElevenLabsTTSService and CartesiaTTSService against our server, driven by Pipecat's test pipeline (run_test): LLM text
token by token, two turns, the second interrupted mid-sentence."""

from __future__ import annotations

import aiohttp
import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService, ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test

from tests.agents.conftest import KEY, Server, llm_tokens

pytestmark = pytest.mark.timeout(600)
# Pipecat ends a context that sends nothing for this long (default 3 s); the demo model on a shared CPU can take
# longer than that to its first audio.
QUIET_S = 30.0
TURN_1 = "Hello there. The weather is lovely today, is it not?"
TURN_2 = "This second answer is rather long, so that it can be interrupted before it ends. It goes on and on."


def _llm_turn(text: str) -> list:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(t) for t in llm_tokens(text)), LLMFullResponseEndFrame()]


async def _two_turns(server: Server, tts) -> None:
    frames = [*_llm_turn(TURN_1), SleepFrame(sleep=20), *_llm_turn(TURN_2), SleepFrame(sleep=1.5),
              InterruptionFrame(), SleepFrame(sleep=3)]
    down, up = await run_test(tts, frames_to_send=frames)
    errors = [f for f in (*down, *up) if isinstance(f, ErrorFrame)]
    assert not errors, errors
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert audio and all(f.sample_rate == 16000 for f in audio), server.log_text()[-2000:]
    first_turn_end = next(i for i, f in enumerate(down) if isinstance(f, TTSStoppedFrame))
    assert sum(len(f.audio) for f in down[:first_turn_end] if isinstance(f, TTSAudioRawFrame)) > 16000
    words = [f for f in down[:first_turn_end] if isinstance(f, TTSTextFrame)]  # from the server's word timings
    assert " ".join(w.text.strip() for w in words).split() == TURN_1.split(), [w.text for w in words]
    times = [f.pts for f in down if isinstance(f, TTSTextFrame)]
    assert None not in times and times == sorted(times)
    assert "Traceback" not in server.log_text()


async def test_pipecat_elevenlabs_two_turns_and_an_interruption(server: Server) -> None:
    await _two_turns(server, ElevenLabsTTSService(api_key=KEY, url=server.ws, sample_rate=16000,
                                                  stop_frame_timeout_s=QUIET_S,
                                                  settings=ElevenLabsTTSService.Settings(voice="default")))


async def test_pipecat_cartesia_two_turns_and_an_interruption(server: Server) -> None:
    await _two_turns(server, CartesiaTTSService(api_key=KEY, url=f"{server.ws}/tts/websocket", sample_rate=16000,
                                                stop_frame_timeout_s=QUIET_S,
                                                settings=CartesiaTTSService.Settings(voice="default")))


async def test_pipecat_elevenlabs_http_stream_with_timestamps(server: Server) -> None:
    """Pipecat's HTTP client reads `.../stream/with-timestamps` (JSON lines with character alignment)."""
    async with aiohttp.ClientSession() as http:
        tts = ElevenLabsHttpTTSService(api_key=KEY, base_url=server.http, aiohttp_session=http, sample_rate=16000,
                                       settings=ElevenLabsHttpTTSService.Settings(voice="default"))
        down, up = await run_test(tts, frames_to_send=[*_llm_turn(TURN_1), SleepFrame(sleep=2)])
    assert not [f for f in (*down, *up) if isinstance(f, ErrorFrame)]
    assert sum(len(f.audio) for f in down if isinstance(f, TTSAudioRawFrame)) > 16000
    words = [f for f in down if isinstance(f, TTSTextFrame)]
    assert " ".join(w.text.strip() for w in words).split() == TURN_1.split(), [w.text for w in words]
    times = [f.pts for f in words]
    assert None not in times and times == sorted(times)
    assert "Traceback" not in server.log_text()
