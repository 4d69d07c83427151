"""Pipecat's own ElevenLabsTTSService and CartesiaTTSService against our server, driven by Pipecat's test pipeline (run_test): LLM text
token by token, two turns, the second interrupted mid-sentence."""

from __future__ import annotations

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
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test

from tests.agents.conftest import KEY, ROOT, Server, llm_tokens

pytestmark = pytest.mark.timeout(600)
ALIGNER = (ROOT / "core" / "align").is_dir()  # word frames need the aligner (issue: timestamps)
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
    if ALIGNER:
        words = [f for f in down if isinstance(f, TTSTextFrame)]
        assert words, "no word frames"
        times = [f.pts for f in words if f.pts is not None]
        assert times == sorted(times)
    assert "Traceback" not in server.log_text()


async def test_pipecat_elevenlabs_two_turns_and_an_interruption(server: Server) -> None:
    await _two_turns(server, ElevenLabsTTSService(api_key=KEY, url=server.ws, sample_rate=16000,
                                                  settings=ElevenLabsTTSService.Settings(voice="default")))


async def test_pipecat_cartesia_two_turns_and_an_interruption(server: Server) -> None:
    await _two_turns(server, CartesiaTTSService(api_key=KEY, url=f"{server.ws}/tts/websocket", sample_rate=16000,
                                                settings=CartesiaTTSService.Settings(voice="default")))
