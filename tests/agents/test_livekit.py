"""LiveKit Agents' own ElevenLabs and Cartesia clients (livekit-plugins-elevenlabs, -cartesia) against our server as a
conversation on their pooled connections: text streamed token by token, a fresh turn spoken whole, a turn the user
barges in on mid-audio (LiveKit closes the stream: after its input ended it sends nothing more; before, ElevenLabs
gets `close_context` with no final flush; Cartesia's socket is closed when the next stream takes a connection), the
next turn, a storm of five barge-ins (alternately after and before the input ended) and a last turn.

Checked: the exact word transcript of every whole turn (LiveKit's timed transcript from the server's timings), an
interrupted turn's words a prefix of its text, every interrupted context stopped within 300 ms of the message that
revealed it, and the next turn's first audio within 1.3x (+100 ms) of a fresh turn's (server side, from the
context's first message; medians: conftest.check_next_turns). On the stand-in server (conftest)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from livekit.agents import APIConnectOptions, APIError, APITimeoutError
from livekit.plugins import cartesia, elevenlabs

from tests.agents.conftest import BROKE_KEY, KEY, Server, check_next_turns, check_no_refusals, llm_tokens

pytestmark = pytest.mark.timeout(900)
TURN_1 = "Hello there. The weather is lovely today, is it not?"
TURN_2 = "This second answer is rather long, so that it can be interrupted before it ends. It goes on and on."
TURN_3 = "Sure, let us talk about something else then."
CONN = APIConnectOptions(max_retry=0, timeout=120)
USER_S = 0.8  # the user speaks, the LLM answers: then the next turn begins
STORM = 5
STOP_MS = 300.0


async def _turn(tts, text: str, *, interrupt_after_frames: int | None = None, end_input: bool = True):
    """One turn; `interrupt_after_frames`: the user barges in once that many frames arrived; `end_input=False`: while
    the LLM is still streaming (the input never ends)."""
    stream = tts.stream(conn_options=CONN)
    for token in llm_tokens(text):
        stream.push_text(token)
        await asyncio.sleep(0)  # one LLM token at a time
    if end_input:
        stream.end_input()
    else:
        stream.flush()  # the sentences so far go out; the reply is still being written
    frames, words = [], []
    async for event in stream:
        frames.append(event.frame)
        words += list(event.frame.userdata.get("lk.timed_transcripts", []) or [])
        if interrupt_after_frames is not None and len(frames) >= interrupt_after_frames:
            break
    await stream.aclose()
    if interrupt_after_frames is not None:
        await asyncio.sleep(USER_S)
    return frames, words


def _check_words(words: list, text: str, seconds: float) -> None:
    """The server's word timings, as LiveKit hands them on (TimedString): every word of the turn, in order."""
    assert "".join(words).split() == text.split(), words
    starts = [w.start_time for w in words]
    assert starts == sorted(starts) and all(w.start_time <= w.end_time for w in words)
    assert starts[-1] <= seconds + 0.5


async def _conversation(server: Server, tts, rate: int) -> None:
    mark, refusals = server.mark(), server.admission_refusals()
    frames, words = await _turn(tts, TURN_1)
    assert frames, server.log_text()[-2000:]
    seconds = sum(f.duration for f in frames)
    assert 0.5 < seconds < 30 and all(f.sample_rate == rate for f in frames)  # LiveKit decodes the MP3 itself
    _check_words(words, TURN_1, seconds)
    for _ in range(2):  # more fresh turns (on an idle socket): the bound compares medians
        frames, words = await _turn(tts, TURN_3)
        _check_words(words, TURN_3, sum(f.duration for f in frames))
    _, heard = await _turn(tts, TURN_2, interrupt_after_frames=3)
    assert "".join(heard).split() == TURN_2.split()[: len("".join(heard).split())]
    for index in range(STORM + 1):
        frames, words = await _turn(tts, TURN_3)
        _check_words(
            words, TURN_3, sum(f.duration for f in frames)
        )  # nothing of the interrupted turn leaks in
        if index < STORM:
            await _turn(tts, TURN_2, interrupt_after_frames=2, end_input=index % 2 == 0)
    await tts.aclose()
    check_no_refusals(server, mark, refusals)  # admission on, with its default settings
    # Every interrupted turn was still generating (paced: ~7 s of audio, at most 3 s ahead of playback) when the
    # next began, and was stopped in time.
    # This conversation's stops (a connection of an earlier test on the shared server may log its own late).
    ours = {e["context_id"] for e in server.events(mark, "utterance_ended")}
    stops = [s for s in server.events(mark, "utterance_stopped") if s.get("context_id") in ours]
    print("stops (reason, ms):", [(s["reason"], s["stop_ms"]) for s in stops])
    assert len(stops) == STORM + 1 and all(s["stop_ms"] <= STOP_MS for s in stops), [
        (s["reason"], s["stop_ms"]) for s in stops
    ]
    completed = [e for e in server.events(mark, "utterance_ended") if e["status"] == "completed"]
    assert len(completed) == STORM + 4 and all(e["characters"] < len(TURN_2) - 20 for e in completed), (
        completed
    )
    first = [e["first_audio_ms"] for e in completed]
    check_next_turns(first[:3], first[3:])
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("encoding", ["mp3_22050_32", "pcm_16000"])
async def test_livekit_elevenlabs_conversation_with_barge_ins(server: Server, encoding: str) -> None:
    async with aiohttp.ClientSession() as http:
        tts = elevenlabs.TTS(
            api_key=KEY,
            base_url=f"{server.http}/v1",
            voice_id="default",
            encoding=encoding,
            http_session=http,
        )
        await _conversation(server, tts, int(encoding.split("_")[1]))


async def test_livekit_cartesia_conversation_with_barge_ins(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        tts = cartesia.TTS(
            api_key=KEY, base_url=server.http, voice="default", http_session=http
        )  # pcm_s16le 24k
        await _conversation(server, tts, 24000)


async def test_livekit_cartesia_turn_after_idling_past_a_minute(server: Server) -> None:
    """LiveKit's pool keeps a Cartesia socket for 300 s and Cartesia keeps it 5 minutes: after 65 s of silence
    the next turn goes out on the same socket (no new connection) and is spoken whole, with no error."""
    mark = server.mark()
    async with aiohttp.ClientSession() as http:
        tts = cartesia.TTS(api_key=KEY, base_url=server.http, voice="default", http_session=http)
        frames, words = await _turn(tts, TURN_3)
        _check_words(words, TURN_3, sum(f.duration for f in frames))
        await asyncio.sleep(65.0)  # past the 60 s an idle socket used to be given
        frames, words = await _turn(tts, TURN_1)
        _check_words(words, TURN_1, sum(f.duration for f in frames))
        await tts.aclose()
    opened = [e for e in server.events(mark, "websocket_opened") if e.get("dialect") == "cartesia"]
    assert len(opened) == 1, opened
    assert "Traceback" not in server.log_text()
    plain = [line for line in server.log_text().splitlines() if line.strip() and not line.startswith("{")]
    assert not plain, plain[:3]  # the log is JSON throughout, uvicorn's own lines included


async def test_livekit_cartesia_refused_turn_ends_without_a_timeout(server: Server) -> None:
    """A context refused while LiveKit is still sending its turn (an unknown voice): LiveKit reads an event's `done`
    before its `type`, and the error says `done: false`, so the turn ends at once with the refusal's own reason (not
    LiveKit's "no audio frames", nor its timeout), and the next turn is spoken whole."""
    async with aiohttp.ClientSession() as http:
        refused = cartesia.TTS(api_key=KEY, base_url=server.http, voice="no-such-voice", http_session=http)
        stream = refused.stream(conn_options=APIConnectOptions(max_retry=0, timeout=20))
        stream.push_text("Hello there. ")
        stream.flush()  # the first sentence goes out; the refusal comes back while the turn is still being sent
        await asyncio.sleep(0.3)
        for token in llm_tokens(TURN_3):
            stream.push_text(token)
        stream.end_input()
        with pytest.raises(APIError) as failure:
            async for _ in stream:
                pass
        await stream.aclose()
        assert not isinstance(failure.value, APITimeoutError), failure.value
        assert "INVALID_SPEAKER" in str(failure.value) and "no-such-voice" in str(failure.value), (
            failure.value
        )
        await refused.aclose()
        tts = cartesia.TTS(api_key=KEY, base_url=server.http, voice="default", http_session=http)
        frames, words = await _turn(tts, TURN_3)
        _check_words(words, TURN_3, sum(f.duration for f in frames))
        await tts.aclose()


async def test_livekit_elevenlabs_turn_after_the_socket_idled_out(server: Server) -> None:
    """The server closes an ElevenLabs socket after the client's `inactivity_timeout` with nothing sent either way
    (lowered to 2 s here in place of LiveKit's 180 s, so no minute is slept): LiveKit's pool notices the closed
    connection and the next turn, on a new one, is spoken whole, with no error and no traceback on the server."""
    async with aiohttp.ClientSession() as http:
        tts = elevenlabs.TTS(
            api_key=KEY,
            base_url=f"{server.http}/v1",
            voice_id="default",
            encoding="pcm_16000",
            inactivity_timeout=2,
            http_session=http,
        )
        frames, words = await _turn(tts, TURN_3)
        _check_words(words, TURN_3, sum(f.duration for f in frames))
        await asyncio.sleep(3.0)  # past the socket's inactivity timeout: the server has closed it
        frames, words = await _turn(tts, TURN_1)
        _check_words(words, TURN_1, sum(f.duration for f in frames))
        await tts.aclose()
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("dialect", ["elevenlabs", "cartesia"])
async def test_livekit_out_of_credits_fails_each_turn_with_its_own_error(
    credits_server: Server, dialect: str
) -> None:
    """A key with no credits: each of two turns in a row fails at once with LiveKit's own API error (not its
    timeout; Cartesia's carries the refusal's reason), and a turn with a funded key on the same server is then
    spoken whole."""
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            if dialect == "elevenlabs":
                broke = elevenlabs.TTS(
                    api_key=BROKE_KEY,
                    base_url=f"{credits_server.http}/v1",
                    voice_id="default",
                    encoding="pcm_16000",
                    http_session=http,
                )
            else:
                broke = cartesia.TTS(
                    api_key=BROKE_KEY, base_url=credits_server.http, voice="default", http_session=http
                )
            with pytest.raises(APIError) as failure:
                await _turn(broke, TURN_3)
            assert not isinstance(failure.value, APITimeoutError), failure.value
            if dialect == "cartesia":  # the reason, not LiveKit's "no audio frames were pushed"
                assert "INSUFFICIENT_CREDITS" in str(failure.value), failure.value
            await broke.aclose()
        tts = elevenlabs.TTS(
            api_key=KEY,
            base_url=f"{credits_server.http}/v1",
            voice_id="default",
            encoding="pcm_16000",
            http_session=http,
        )
        frames, words = await _turn(tts, TURN_3)
        _check_words(words, TURN_3, sum(f.duration for f in frames))
        await tts.aclose()
    assert "Traceback" not in credits_server.log_text()
