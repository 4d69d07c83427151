"""A long reply (~30 s of audio) sent whole, played to the end through each framework's own client with its default
timeouts (Pipecat's stop_frame_timeout_s is 3 s: a reply silent on the wire that long is ended there and the rest
dropped), on the stand-in server (a GPU's engine, far ahead of playback, paced): every word arrives, in order, and
none after it has played (a word is late when its time reaches the framework after the word's end on the playback
clock, which starts at the first audio). Then a reply interrupted after ~2 s of audio reports the words heard."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from livekit.agents import APIConnectOptions
from livekit.plugins import cartesia, elevenlabs
from pipecat.frames.frames import (
    ErrorFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService, ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test

from tests.agents.conftest import KEY, Server, check_no_refusals, llm_tokens

pytestmark = pytest.mark.timeout(600)
LONG = (
    "So here is the whole story, told from the start. We left early in the morning, before the sun was up, and "
    "drove north along the coast for most of the day. The road was narrow, and the views were wide, and we stopped "
    "twice for coffee. By the evening we had reached the little harbour town where my aunt still lives, and she "
    "had cooked enough food for ten people. We ate, we talked, and then we slept for a very long time."
)
PLAY_S = 40.0  # the reply (~29 s of audio, at most 3 s ahead of playback) has played out


class WordClock(BaseObserver):
    """Pipeline times (ns) of the TTS service's first audio frame and of each word frame it pushes, with the word's
    own presentation time (pts: the playback clock from the first audio plus the word's start)."""

    def __init__(self, tts: object) -> None:
        super().__init__()
        self.tts = tts
        self.first_audio: int | None = None
        self.words: list[tuple[str, int, int | None]] = []  # (word, pushed at, pts)
        self.audio_s = 0.0

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if data.source is not self.tts:
            return
        if isinstance(frame, TTSAudioRawFrame):
            if self.first_audio is None:
                self.first_audio = data.timestamp
            self.audio_s += len(frame.audio) / 2 / frame.sample_rate
        elif isinstance(frame, TTSTextFrame) and frame.text.strip():
            self.words.append((frame.text.strip(), data.timestamp, frame.pts))


def pipecat_late(clock: WordClock) -> list[tuple[str, float]]:
    """Words pushed after they had finished playing (after the next word's presentation time; the last word: a
    second after its own), with how late (s)."""
    late = []
    for index, (word, pushed, pts) in enumerate(clock.words):
        assert pts is not None, word
        following = clock.words[index + 1][2] if index + 1 < len(clock.words) else None
        end = following if following is not None else pts + 1_000_000_000
        if pushed > end:
            late.append((word, round((pushed - end) / 1e9, 2)))
    return late


async def _pipecat(tts: object, text: str = LONG) -> WordClock:
    clock = WordClock(tts)
    frames = [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in llm_tokens(text)),
        LLMFullResponseEndFrame(),
        SleepFrame(sleep=PLAY_S),
    ]
    down, up = await run_test(tts, frames_to_send=frames, observers=[clock])
    assert not [f for f in (*down, *up) if isinstance(f, ErrorFrame)]
    return clock


def _check(words: list[str], late: list, audio_s: float, server: Server, mark: int, refusals: float) -> None:
    print("words", len(words), "late", late, "audio s", round(audio_s, 2))
    check_no_refusals(server, mark, refusals)  # admission on: no sentence of the reply was refused
    assert words == LONG.split(), words
    assert not late, late
    ended = server.events(mark, "utterance_ended") or server.events(mark, "stream_ended")
    assert audio_s > 20.0
    assert "Traceback" not in server.log_text(), ended


@pytest.mark.parametrize("dialect", ["elevenlabs", "cartesia", "http"])
async def test_pipecat_long_reply_plays_to_the_end_with_default_timeouts(
    server: Server, dialect: str
) -> None:
    mark, refusals = server.mark(), server.admission_refusals()
    if dialect == "elevenlabs":
        clock = await _pipecat(
            ElevenLabsTTSService(
                api_key=KEY,
                url=server.ws,
                sample_rate=16000,
                settings=ElevenLabsTTSService.Settings(voice="default"),
            )
        )
    elif dialect == "cartesia":
        clock = await _pipecat(
            CartesiaTTSService(
                api_key=KEY,
                url=f"{server.ws}/tts/websocket",
                sample_rate=16000,
                settings=CartesiaTTSService.Settings(voice="default"),
            )
        )
    else:
        async with aiohttp.ClientSession() as http:
            clock = await _pipecat(
                ElevenLabsHttpTTSService(
                    api_key=KEY,
                    base_url=server.http,
                    aiohttp_session=http,
                    sample_rate=16000,
                    settings=ElevenLabsHttpTTSService.Settings(voice="default"),
                )
            )
    _check([w for w, _, _ in clock.words], pipecat_late(clock), clock.audio_s, server, mark, refusals)


def _livekit(server: Server, dialect: str, http: aiohttp.ClientSession) -> object:
    if dialect == "elevenlabs":
        return elevenlabs.TTS(
            api_key=KEY,
            base_url=f"{server.http}/v1",
            voice_id="default",
            encoding="pcm_16000",
            http_session=http,
        )
    return cartesia.TTS(api_key=KEY, base_url=server.http, voice="default", http_session=http)


async def _livekit_turn(tts, text: str, stop_after_s: float | None = None):  # noqa: ANN001
    """One turn, the reply's tokens then its end; the words LiveKit hands on, each with when it arrived (s on the
    playback clock: from the first frame), and the seconds of audio received. `stop_after_s`: the user barges in
    once that much audio came."""
    stream = tts.stream(conn_options=APIConnectOptions(max_retry=0))  # LiveKit's default timeout
    for token in llm_tokens(text):
        stream.push_text(token)
        await asyncio.sleep(0)
    stream.end_input()
    first: float | None = None
    words: list[tuple[object, float]] = []
    audio_s = 0.0
    async for event in stream:
        now = time.monotonic()
        first = now if first is None else first
        audio_s += event.frame.duration
        words += [(w, now - first) for w in event.frame.userdata.get("lk.timed_transcripts", []) or []]
        if stop_after_s is not None and audio_s >= stop_after_s:
            break
    await stream.aclose()
    return words, audio_s


@pytest.mark.parametrize("dialect", ["elevenlabs", "cartesia"])
async def test_livekit_long_reply_plays_to_the_end_and_an_interrupted_one_reports_its_words(
    server: Server, dialect: str
) -> None:
    mark, refusals = server.mark(), server.admission_refusals()
    async with aiohttp.ClientSession() as http:
        tts = _livekit(server, dialect, http)
        words, audio_s = await _livekit_turn(tts, LONG)
        late = [(str(w), round(at - w.end_time, 2)) for w, at in words if at > w.end_time]
        _check("".join(str(w) for w, _ in words).split(), late, audio_s, server, mark, refusals)
        heard, _ = await _livekit_turn(tts, LONG, stop_after_s=2.0)
        said = "".join(str(w) for w, _ in heard).split()
        print("heard after 2 s:", said)
        assert said and said == LONG.split()[: len(said)]
        await tts.aclose()
