"""Pipecat's own ElevenLabsTTSService, CartesiaTTSService and ElevenLabsHttpTTSService against our server, driven by
Pipecat's test pipeline (run_test) as a conversation: LLM text token by token, a fresh turn spoken whole, a turn the
user barges in on mid-audio, the next turn, then a storm of five barge-ins and a last turn, all on one socket.

Checked: every completed turn's word transcript is exact, an interrupted turn's words are a prefix of its text, no
audio of an interrupted turn comes after the next turn's audio began, every interrupted context the server stopped
was stopped within 300 ms of the message that revealed the barge-in (the server's `utterance_stopped` log events),
and the next turn's first audio (the server's `utterance_ended.first_audio_ms`, from the context's first message)
is within 1.3x (+100 ms) of a fresh turn's (medians: conftest.check_next_turns). The conversations run on the
stand-in server (conftest: the wiring is what is timed); the HTTP test speaks through the demo model itself."""

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
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSTextFrame,
)
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService, ElevenLabsTTSService
from pipecat.tests.utils import SleepFrame, run_test

from tests.agents.conftest import BROKE_KEY, KEY, Server, check_next_turns, check_no_refusals, llm_tokens

pytestmark = pytest.mark.timeout(900)
# Pipecat ends a context that sends nothing for this long (default 3 s); the demo model on a shared CPU can take
# longer than that to its first audio (the HTTP test).
QUIET_S = 30.0
TURN_1 = "Hello there. The weather is lovely today, is it not?"
TURN_2 = (
    "This second answer is rather long, so that it can be interrupted before it ends. It goes on and on, and "
    "then it goes on a little more."
)
TURN_3 = "Sure, let us talk about something else then."
SPEAK = "One more thing."
# A whole turn is out meanwhile: on the stand-in a reply runs at most TTS_STREAM_MAX_AHEAD_S (3 s) ahead of
# playback, so TURN_1 + SPEAK (~5 s of audio) end ~2 s after their first audio.
SETTLE_S = 6.0
MODEL_SETTLE_S = 25.0  # the same on the demo model (a shared CPU)
# The user barges in this long after the turn began: its audio has started, and TURN_2 (~9 s of audio, at most 3 s
# ahead of playback) is still being generated when the next turn opens, so the server has something to stop.
BARGE_S = 1.5
USER_S = 0.8  # the user speaks, the LLM answers: then the next turn begins
STORM = 5
STOP_MS = 300.0


def _llm_turn(text: str) -> list:
    return [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in llm_tokens(text)),
        LLMFullResponseEndFrame(),
    ]


def _barged(text: str) -> list:
    return [*_llm_turn(text), SleepFrame(sleep=BARGE_S), InterruptionFrame(), SleepFrame(sleep=USER_S)]


def conversation_frames() -> tuple[list, list[str | None], list[str]]:
    """The frames to send; per context in order, the text it speaks whole (None: it is interrupted); and per whole
    context what its first audio is: fresh (an idle socket), queued (right behind the previous reply) or after (the
    next turn after a barge-in)."""
    frames = [*_llm_turn(TURN_1), TTSSpeakFrame(SPEAK), SleepFrame(sleep=SETTLE_S)]
    expected: list[str | None] = [TURN_1, SPEAK]
    kinds = ["fresh", "queued"]
    for _ in range(2):  # more fresh turns: the bound compares medians
        frames += [*_llm_turn(TURN_3), SleepFrame(sleep=SETTLE_S)]
        expected.append(TURN_3)
        kinds.append("fresh")
    frames += [*_barged(TURN_2), *_llm_turn(TURN_3), SleepFrame(sleep=SETTLE_S)]
    expected += [None, TURN_3]
    kinds.append("after")
    for _ in range(STORM):
        frames += _barged(TURN_2)
        expected.append(None)
    frames += [*_llm_turn(TURN_3), SleepFrame(sleep=SETTLE_S)]
    expected.append(TURN_3)
    kinds.append("after")
    return frames, expected, kinds


def per_context(down) -> tuple[list[str], dict[str, list[str]], dict[str, list[int]]]:
    """Contexts in the order their audio began, each one's words (from the server's timings) and the positions of
    its audio frames in the downstream order."""
    order: list[str] = []
    words: dict[str, list[str]] = {}
    audio: dict[str, list[int]] = {}
    current = None
    for index, frame in enumerate(down):
        if isinstance(frame, TTSStartedFrame):
            current = frame.context_id
        elif isinstance(frame, TTSAudioRawFrame):
            current = frame.context_id or current
            audio.setdefault(current, []).append(index)
        elif isinstance(frame, TTSTextFrame) and current is not None:
            words.setdefault(current, []).append(frame.text.strip())
        if current is not None and current not in order:
            order.append(current)
    return order, words, audio


def check_conversation(
    server: Server, mark: int, refusals: float, down, up, expected: list[str | None], kinds: list[str]
) -> None:
    check_no_refusals(server, mark, refusals)  # admission on, with its default settings
    errors = [f for f in (*down, *up) if isinstance(f, ErrorFrame)]
    assert not errors, errors
    order, words, audio = per_context(down)
    ended = {e["context_id"]: e for e in server.events(mark, "utterance_ended")}
    whole = [text for text in expected if text is not None]
    # The turns meant to be spoken whole, in the order their audio began (the interrupted ones carry TURN_2).
    spoken = [c for c in order if c in ended and ended[c]["characters"] < len(TURN_2) - 20]
    assert [" ".join(words.get(c, [])).split() for c in spoken] == [t.split() for t in whole], [
        (ended.get(c, {}).get("status"), words.get(c)) for c in order
    ]
    assert all(ended[c]["status"] == "completed" for c in spoken)
    for c in order:
        if c not in spoken:  # interrupted: what was heard is a prefix of the turn's words
            heard = " ".join(words.get(c, [])).split()
            assert heard == TURN_2.split()[: len(heard)], heard
    # No audio of an interrupted turn after the next turn's audio began.
    for earlier, later in zip(order, order[1:], strict=False):
        if earlier not in spoken and audio.get(later):
            assert max(audio.get(earlier, [-1])) < min(audio[later])
    # Each interrupted turn was still generating (paced) when the next turn opened, and was stopped in time.
    # This conversation's stops (a connection of an earlier test on the shared server may log its own late).
    stops = [s for s in server.events(mark, "utterance_stopped") if s.get("context_id") in ended]
    interrupted = [e for e in ended.values() if e["characters"] >= len(TURN_2) - 20]
    assert len(interrupted) == STORM + 1 and all(e["status"] == "cancelled" for e in interrupted), interrupted
    print("stops (reason, ms):", [(s["reason"], s["stop_ms"]) for s in stops])
    assert len(stops) == STORM + 1 and all(s["stop_ms"] <= STOP_MS for s in stops), [
        (s["reason"], s["stop_ms"]) for s in stops
    ]
    first = [ended[c]["first_audio_ms"] for c in spoken]
    assert len(first) == len(kinds)
    check_next_turns(
        [ms for ms, kind in zip(first, kinds, strict=True) if kind == "fresh"],
        [ms for ms, kind in zip(first, kinds, strict=True) if kind == "after"],
    )
    assert "Traceback" not in server.log_text()


async def _conversation(server: Server, tts) -> None:
    frames, expected, kinds = conversation_frames()
    mark, refusals = server.mark(), server.admission_refusals()
    down, up = await run_test(tts, frames_to_send=frames)
    assert all(f.sample_rate == 16000 for f in down if isinstance(f, TTSAudioRawFrame))
    check_conversation(server, mark, refusals, down, up, expected, kinds)


async def test_pipecat_elevenlabs_conversation_with_barge_ins(server: Server) -> None:
    await _conversation(
        server,
        ElevenLabsTTSService(
            api_key=KEY,
            url=server.ws,
            sample_rate=16000,
            stop_frame_timeout_s=QUIET_S,
            settings=ElevenLabsTTSService.Settings(voice="default"),
        ),
    )


async def test_pipecat_cartesia_conversation_with_barge_ins(server: Server) -> None:
    await _conversation(
        server,
        CartesiaTTSService(
            api_key=KEY,
            url=f"{server.ws}/tts/websocket",
            sample_rate=16000,
            stop_frame_timeout_s=QUIET_S,
            settings=CartesiaTTSService.Settings(voice="default"),
        ),
    )


async def test_pipecat_elevenlabs_emoji_turns_keep_the_service(server: Server) -> None:
    """Pipecat counts every context that completes without audio and writes the service off after three in a row:
    three emoji-only replies get a short silence each, so no error is reported and the next turn is spoken whole.
    The turns' sentences come one message each, unspaced, with auto_mode (Pipecat's defaults): each is cut there."""
    tts = ElevenLabsTTSService(
        api_key=KEY,
        url=server.ws,
        sample_rate=16000,
        stop_frame_timeout_s=QUIET_S,
        settings=ElevenLabsTTSService.Settings(voice="default"),
    )
    frames = [f for _ in range(3) for f in (*_llm_turn("🙂 🎉"), SleepFrame(sleep=1.0))]
    frames += [*_llm_turn(TURN_1), SleepFrame(sleep=SETTLE_S)]
    mark, refusals = server.mark(), server.admission_refusals()
    down, up = await run_test(tts, frames_to_send=frames)
    check_no_refusals(server, mark, refusals)
    assert not [f for f in (*down, *up) if isinstance(f, ErrorFrame)]
    order, words, _ = per_context(down)
    assert " ".join(words[order[-1]]).split() == TURN_1.split(), words
    ended = server.events(mark, "utterance_ended")
    assert [e["status"] for e in ended] == ["empty"] * 3 + ["completed"], ended


@pytest.mark.parametrize("which", ["server", "model_server"])
async def test_pipecat_elevenlabs_http_stream_with_timestamps(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Pipecat's HTTP client reads `.../stream/with-timestamps` (JSON lines with character alignment): a turn, a
    turn interrupted (Pipecat hangs up), and the next turn, each with its exact words; the interrupted request's
    generation ended within 300 ms of the hang-up reaching the server. On the stand-in the interrupted request is
    surely still generating (paced) when Pipecat hangs up; on the demo model itself (the one test that speaks
    through the real model, codec and aligner) it may have finished on a fast host, so a stop is not required."""
    server: Server = request.getfixturevalue(which)
    settle = SETTLE_S if which == "server" else MODEL_SETTLE_S
    mark = server.mark()
    async with aiohttp.ClientSession() as http:
        tts = ElevenLabsHttpTTSService(
            api_key=KEY,
            base_url=server.http,
            aiohttp_session=http,
            sample_rate=16000,
            stop_frame_timeout_s=QUIET_S,
            settings=ElevenLabsHttpTTSService.Settings(voice="default"),
        )
        frames = [
            *_llm_turn(TURN_1),
            SleepFrame(sleep=settle),
            *_barged(TURN_2),
            *_llm_turn(TURN_3),
            SleepFrame(sleep=settle),
        ]
        down, up = await run_test(tts, frames_to_send=frames)
    assert not [f for f in (*down, *up) if isinstance(f, ErrorFrame)]
    order, words, _ = per_context(down)
    assert " ".join(words[order[0]]).split() == TURN_1.split(), words
    assert " ".join(words[order[-1]]).split() == TURN_3.split(), words
    times = [f.pts for f in down if isinstance(f, TTSTextFrame)]
    assert None not in times
    stops = server.events(mark, "stream_stopped")
    print("HTTP stops (reason, ms):", [(s["reason"], s["stop_ms"]) for s in stops])
    assert all(s["stop_ms"] <= STOP_MS for s in stops), stops
    assert len(stops) == 1 or (which == "model_server" and not stops), stops  # the interrupted request only
    assert "Traceback" not in server.log_text()


# (seconds after the turn's tokens until the user barges in, seconds the user then speaks): before the first audio
# (which comes ~180 ms after the first sentence on the stand-in), early, late, and a long user turn; then a turn
# spoken whole.
BARGES = ((0.1, 0.8), (0.7, 0.8), (2.5, 0.8), (1.5, 6.0))


async def test_pipecat_elevenlabs_barge_ins_at_any_time(server: Server) -> None:
    """Barge-ins before the first audio, at 0.7 s and 2.5 s, and one followed by a 6 s user turn: every interrupted
    turn's words are a prefix of its text, none of its audio comes after the next turn's began, every stop the
    server made came within 300 ms of the message that revealed it, and the last turn is spoken whole."""
    tts = ElevenLabsTTSService(
        api_key=KEY,
        url=server.ws,
        sample_rate=16000,
        stop_frame_timeout_s=QUIET_S,
        settings=ElevenLabsTTSService.Settings(voice="default"),
    )
    frames = [
        f
        for barge_s, user_s in BARGES
        for f in (
            *_llm_turn(TURN_2),
            SleepFrame(sleep=barge_s),
            InterruptionFrame(),
            SleepFrame(sleep=user_s),
        )
    ]
    frames += [*_llm_turn(TURN_3), SleepFrame(sleep=SETTLE_S)]
    mark, refusals = server.mark(), server.admission_refusals()
    down, up = await run_test(tts, frames_to_send=frames)
    check_no_refusals(server, mark, refusals)
    assert not [f for f in (*down, *up) if isinstance(f, ErrorFrame)]
    order, words, audio = per_context(down)
    assert " ".join(words[order[-1]]).split() == TURN_3.split(), words
    for context in order[:-1]:
        heard = " ".join(words.get(context, [])).split()
        assert heard == TURN_2.split()[: len(heard)], heard
    for earlier, later in zip(order, order[1:], strict=False):
        if audio.get(later):
            assert max(audio.get(earlier, [-1])) < min(audio[later])
    stops = server.events(mark, "utterance_stopped")
    print("stops (reason, ms):", [(s["reason"], s["stop_ms"]) for s in stops])
    assert all(s["stop_ms"] <= STOP_MS for s in stops), [(s["reason"], s["stop_ms"]) for s in stops]
    ended = server.events(mark, "utterance_ended")
    print(
        "ended (status, characters, context):",
        [(e["status"], e["characters"], e["context_id"]) for e in ended],
        "contexts with audio:",
        order,
    )
    assert [e["status"] for e in ended][-1] == "completed" and len(ended) == len(BARGES) + 1, ended
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("dialect", ["elevenlabs", "cartesia"])
async def test_pipecat_out_of_credits_is_one_error_per_turn(credits_server: Server, dialect: str) -> None:
    """A key with no credits: each of two turns in a row is refused, promptly (the turn ends long before Pipecat's
    quiet-context timeout), with no audio. ElevenLabs: one error per turn, Pipecat's own "completed with no audio"
    (it ignores ElevenLabs' error messages). Cartesia: the server's INSUFFICIENT_CREDITS once per turn and nothing
    else: the refused context ends with an empty audio frame, so Pipecat does not count it as a silent turn."""
    if dialect == "elevenlabs":
        tts = ElevenLabsTTSService(
            api_key=BROKE_KEY,
            url=credits_server.ws,
            sample_rate=16000,
            stop_frame_timeout_s=QUIET_S,
            settings=ElevenLabsTTSService.Settings(voice="default"),
        )
    else:
        tts = CartesiaTTSService(
            api_key=BROKE_KEY,
            url=f"{credits_server.ws}/tts/websocket",
            sample_rate=16000,
            stop_frame_timeout_s=QUIET_S,
            settings=CartesiaTTSService.Settings(voice="default"),
        )
    frames = [f for _ in range(2) for f in (*_llm_turn(TURN_3), SleepFrame(sleep=2.0))]
    down, up = await run_test(tts, frames_to_send=frames)
    errors = [f.error for f in (*down, *up) if isinstance(f, ErrorFrame)]
    print("errors:", errors)
    silent = [e for e in errors if "completed with no audio" in e]
    refused = [e for e in errors if "INSUFFICIENT_CREDITS" in e]
    if dialect == "elevenlabs":
        assert len(silent) == 2 and not refused, errors
    else:
        assert len(refused) == 2 and not silent, errors
    assert len(errors) == len(silent) + len(refused), errors
    assert not [f for f in down if isinstance(f, TTSAudioRawFrame) and f.audio]
    assert "Traceback" not in credits_server.log_text()
