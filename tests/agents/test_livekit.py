"""LiveKit Agents' own ElevenLabs and Cartesia clients (livekit-plugins-elevenlabs, -cartesia) against our server: text streamed token by
token, two turns on one pooled connection, the second interrupted mid-sentence, MP3 (its default) and PCM."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from livekit.agents import APIConnectOptions
from livekit.plugins import cartesia, elevenlabs

from tests.agents.conftest import KEY, ROOT, Server, llm_tokens

pytestmark = pytest.mark.timeout(600)
ALIGNER = (ROOT / "core" / "align").is_dir()  # timings need the aligner (issue: timestamps)
TURN_1 = "Hello there. The weather is lovely today, is it not?"
TURN_2 = "This second answer is rather long, so that it can be interrupted before it ends. It goes on and on."
CONN = APIConnectOptions(max_retry=0, timeout=120)


async def _turn(tts: elevenlabs.TTS | cartesia.TTS, text: str, *, interrupt_after_frames: int | None = None):
    stream = tts.stream(conn_options=CONN)
    for token in llm_tokens(text):
        stream.push_text(token)
        await asyncio.sleep(0)  # one LLM token at a time
    stream.end_input()
    frames, words = [], []
    async for event in stream:
        frames.append(event.frame)
        words += list(event.frame.userdata.get("lk.timed_transcripts", []) or [])
        if interrupt_after_frames is not None and len(frames) >= interrupt_after_frames:
            break
    await stream.aclose()
    return frames, words


@pytest.mark.parametrize("encoding", ["mp3_22050_32", "pcm_16000"])
async def test_livekit_elevenlabs_two_turns_and_an_interruption(server: Server, encoding: str) -> None:
    async with aiohttp.ClientSession() as http:
        tts = elevenlabs.TTS(api_key=KEY, base_url=f"{server.http}/v1", voice_id="default", encoding=encoding,
                             http_session=http)
        frames, words = await _turn(tts, TURN_1)
        assert frames, server.log_text()[-2000:]
        seconds = sum(f.duration for f in frames)
        assert 0.5 < seconds < 30  # audio that decodes (LiveKit decodes the MP3 itself)
        assert all(f.sample_rate == int(encoding.split("_")[1]) for f in frames)
        if ALIGNER:
            assert words, "no word timings"
            starts = [w.start_time for w in words]
            assert starts == sorted(starts) and starts[-1] <= seconds + 0.5
        interrupted, _ = await _turn(tts, TURN_2, interrupt_after_frames=3)
        assert len(interrupted) == 3
        again, _ = await _turn(tts, "And a third turn after the interruption.")  # the pool still works
        assert sum(f.duration for f in again) > 0.3
        await tts.aclose()
    assert "Traceback" not in server.log_text()


async def test_livekit_cartesia_two_turns_and_an_interruption(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        tts = cartesia.TTS(api_key=KEY, base_url=server.http, voice="default", http_session=http)  # pcm_s16le 24k
        frames, words = await _turn(tts, TURN_1)
        assert frames, server.log_text()[-2000:]
        seconds = sum(f.duration for f in frames)
        assert 0.5 < seconds < 30 and all(f.sample_rate == 24000 for f in frames)
        if ALIGNER:
            starts = [w.start_time for w in words]
            assert starts and starts == sorted(starts)
        interrupted, _ = await _turn(tts, TURN_2, interrupt_after_frames=3)
        assert len(interrupted) == 3
        again, _ = await _turn(tts, "And a third turn after the interruption.")
        assert sum(f.duration for f in again) > 0.3
        await tts.aclose()
    assert "Traceback" not in server.log_text()
