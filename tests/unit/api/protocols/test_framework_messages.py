"""What the voice-agent frameworks send, message by message, and what the dialect routes do with it (no server,
no model): Pipecat 1.14's ElevenLabs client sends one sentence per message with no space between them and
`auto_mode=true`, and closes an interrupted context a second time at a barge-in; the alignment keeps words apart as
the text had them and adds nothing (docs/voice-agents.md)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from api.protocols.elevenlabs.requests import ConnectionParams, parse_output_format
from api.protocols.elevenlabs.responses import ElevenLabsWire
from api.protocols.elevenlabs.socket import _Connection
from core.align import WordSpan, character_spans
from processing.segmenter import TextSegmenter
from services.sessions.refused_contexts import RefusedContexts


# ---------------------------------------------------------------------------------------------- segmenter
def test_a_sentence_sent_without_trailing_space_is_cut_when_the_next_one_begins() -> None:
    seg = TextSegmenter()
    assert seg.push("Okay, Bravo here.") == []  # the buffer's end: "here." might still become "here.com"
    assert seg.push("This reply is short.") == ["Okay, Bravo here."]
    assert seg.flush() == ["This reply is short."]


def test_pieces_that_continue_a_word_are_not_cut() -> None:
    seg = TextSegmenter(min_words=1)
    for pieces in (
        ["It costs 3.", "5 dollars today"],
        ["Visit example.", "com for more"],
        ["See e.g.", "This one"],
    ):
        assert [p for piece in pieces for p in seg.push(piece)] == [], pieces
        seg.flush()


# ---------------------------------------------------------------------------------------------- ElevenLabs route
class FakeSession:
    """Records what the route asks of the session core (the core's own behaviour has its tests)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refused = RefusedContexts()
        self.open: dict[str | None, Any] = {}
        self.running: dict[str | None, Any] = {}

    def utterance(self, cid: str | None) -> Any:
        return self.open.get(cid)

    def unfinished(self, cid: str | None) -> Any:
        return self.running.get(cid)

    async def supersede(self, cid: str | None) -> None:
        self.calls.append(("supersede", cid))

    async def start(self, request: Any, *, context_id: str | None) -> Any:
        self.calls.append(("start", context_id))
        u = SimpleNamespace(characters=0, ssml=False)
        u.read_ssml = lambda on: setattr(
            u, "ssml", on
        )  # Utterance.read_ssml, without the key's silence window
        self.open[context_id] = self.running[context_id] = u
        return u

    async def text(self, text: str, *, context_id: str | None) -> None:
        self.calls.append(("text", context_id, text))
        self.open[context_id].characters += len(text)

    async def flush(self, *, context_id: str | None, quiet: bool = False) -> None:
        self.calls.append(("flush", context_id))

    async def end(self, *, context_id: str | None) -> None:
        self.calls.append(("end", context_id))
        self.open.pop(context_id, None)

    async def cancel(
        self,
        *,
        context_id: str | None = None,
        every: bool = True,
        quiet: bool = False,
        reason: str = "cancelled",
    ) -> None:
        self.calls.append(("cancel", context_id, reason))
        self.open.pop(context_id, None)
        self.running.pop(context_id, None)


def connection(query: dict[str, str]) -> tuple[_Connection, FakeSession]:
    session = FakeSession()
    params = ConnectionParams.model_validate(query)
    conn = _Connection(
        SimpleNamespace(),
        session,
        SimpleNamespace(key_id="k"),
        "v",
        params,  # type: ignore[arg-type]
        parse_output_format("pcm_24000"),
        multi=True,
    )

    async def request(speed: float | None, *, admit: bool = True) -> Any:
        session.calls.append(("admit", admit))
        return object()

    conn.synthesis_request = request  # type: ignore[method-assign]
    return conn, session


def send(conn: _Connection, *messages: dict[str, Any]) -> None:
    async def run() -> None:
        for message in messages:
            await conn.handle(json.dumps(message))

    asyncio.run(run())


def pipecat_turn(cid: str) -> list[dict[str, Any]]:
    """Pipecat 1.14's ElevenLabs client, one LLM turn: open, a sentence per message, flush, close."""
    return [
        {"text": " ", "context_id": cid, "voice_settings": {"speed": 1.0}},
        {"text": "Okay, Bravo here.", "context_id": cid},
        {"text": "This reply is short.", "context_id": cid},
        {"context_id": cid, "flush": True},
        {"context_id": cid, "close_context": True},
    ]


def test_auto_mode_speaks_each_message_at_once() -> None:
    conn, session = connection({"auto_mode": "true"})
    send(conn, *pipecat_turn("t1"))
    assert [c for c in session.calls if c[0] in ("text", "flush", "end")] == [
        ("text", "t1", "Okay, Bravo here."),
        ("flush", "t1"),
        ("text", "t1", "This reply is short."),
        ("flush", "t1"),
        ("flush", "t1"),
        ("end", "t1"),
    ]


def test_without_auto_mode_text_waits_for_a_sentence_end_or_flush() -> None:
    conn, session = connection({})
    send(conn, *pipecat_turn("t1")[:3])
    assert [c[0] for c in session.calls if c[0] in ("text", "flush")] == ["text", "text"]


def test_closing_a_closed_context_that_still_generates_interrupts_it() -> None:
    """Pipecat at a barge-in: close_context again for the interrupted context (closed at the end of its turn)."""
    conn, session = connection({"auto_mode": "true"})
    send(conn, *pipecat_turn("t1"))
    assert ("cancel", "t1", "interrupted") not in session.calls  # the turn's own close finishes it
    send(conn, {"context_id": "t1", "close_context": True})
    assert session.calls[-1] == ("cancel", "t1", "interrupted")
    send(conn, {"context_id": "t1", "close_context": True})  # finished: nothing more to stop
    assert (
        session.calls[-1] == ("cancel", "t1", "interrupted") and session.calls.count(session.calls[-1]) == 1
    )


def test_a_turn_interrupted_before_its_flush_is_abandoned_even_with_auto_mode() -> None:
    conn, session = connection({"auto_mode": "true"})
    send(conn, *pipecat_turn("t1")[:3], {"context_id": "t1", "close_context": True})
    assert session.calls[-1] == ("cancel", "t1", "abandoned")


def test_a_new_context_supersedes_the_interrupted_one_before_admission() -> None:
    conn, session = connection({})
    send(conn, *pipecat_turn("t1")[:2], *pipecat_turn("t2")[:2])
    kinds = [c for c in session.calls if c[0] in ("supersede", "admit", "start")]
    assert kinds == [
        ("supersede", "t1"),
        ("admit", True),
        ("start", "t1"),
        ("supersede", "t2"),
        ("admit", True),
        ("start", "t2"),
    ]


# ---------------------------------------------------------------------------------------------- alignment
def _event(words: list[tuple[str, float, float]]) -> SimpleNamespace:
    spans = tuple(WordSpan(w, s, e) for w, s, e in words)
    chars = character_spans(spans)
    return SimpleNamespace(characters=chars, normalized_characters=chars)


def _context_chars(events: list[SimpleNamespace]) -> str:
    wire = ElevenLabsWire(absolute_times=True)
    u = SimpleNamespace(context_id="c", last_audio_span=(0.0, 0.0), wire_state={})
    messages = []
    for event in events:
        messages += wire.timings(u, event)  # type: ignore[arg-type]
        u.last_audio_span = (0.0, 10.0)
        messages += wire.audio(u, b"\x00\x00")  # type: ignore[arg-type]
    messages += wire.done(u)  # type: ignore[arg-type]
    return "".join(c for m in messages if m.get("alignment") for c in m["alignment"]["chars"])


def test_han_alignment_has_no_spaces_the_text_did_not_have() -> None:
    events = [
        _event([("你", 0.0, 0.2), ("好，", 0.2, 0.4)]),
        _event([("我", 0.5, 0.7), ("是", 0.7, 0.9)]),
        _event([("Bravo.", 1.0, 1.5)]),
    ]
    assert _context_chars(events) == "你好，我是 Bravo."


def test_sentences_sent_without_a_space_keep_their_words_apart_and_nothing_is_added() -> None:
    events = [
        _event([("Okay,", 0.0, 0.3), ("Bravo", 0.3, 0.6), ("here.", 0.6, 0.9)]),
        _event([("This", 1.0, 1.2), ("reply.", 1.2, 1.6)]),
    ]
    assert _context_chars(events) == "Okay, Bravo here. This reply."


# ---------------------------------------------------------------------------------------------- refusals
def test_every_admission_refusal_is_logged_with_its_rule(caplog: Any) -> None:
    from services.device.admission import AdmissionDecision
    from services.pipeline.speech import SpeechService
    from services.pipeline.synthesis import SynthesisError

    class Refusing:
        async def admit(self, key: str | None = None, *, super_resolved: bool = True) -> AdmissionDecision:
            return AdmissionDecision(False, "first audio would be late", 2, rule="llm_pace")

    models = SimpleNamespace(
        pipeline_resources=lambda: SimpleNamespace(admission=Refusing(), continuations=None)
    )
    speech = SpeechService.__new__(SpeechService)
    speech.models = models  # type: ignore[assignment]
    caplog.set_level("WARNING", logger="services.pipeline.speech")
    try:
        asyncio.run(speech.admit())
    except SynthesisError as exc:
        assert exc.code == "SERVER_OVERLOADED"
    else:
        raise AssertionError("admitted")
    [record] = [r for r in caplog.records if r.getMessage() == "admission_refused"]
    assert record.rule == "llm_pace"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- Cartesia route
def test_a_refused_cartesia_context_is_answered_done_after_its_final_message() -> None:
    """LiveKit reads the refusal's `done` as the end only once its own input ended: its final `continue: false`
    gets `done` again, so the turn ends at once instead of at a timeout. Before it, a chunk with no audio: Pipecat
    counts a context that ends without an audio frame as a silent turn; LiveKit skips empty `data`."""
    from api.protocols.cartesia.requests import IDLE_TIMEOUT_S
    from api.protocols.cartesia.socket import _Connection as CartesiaConnection

    replies: list[dict[str, Any]] = []
    session = FakeSession()
    session.outbox = SimpleNamespace(reply=lambda payload: _append(replies, payload))  # type: ignore[attr-defined]
    session.refused.remember("lk1")  # refused while LiveKit was still sending the turn's text
    conn = CartesiaConnection(SimpleNamespace(), session, SimpleNamespace())  # type: ignore[arg-type]

    async def run() -> None:
        for message in (
            {"context_id": "lk1", "transcript": "more words ", "continue": True},
            {"context_id": "lk1", "transcript": " ", "continue": False},
        ):
            await conn.handle(json.dumps(message))

    asyncio.run(run())
    assert replies == [
        {
            "type": "chunk",
            "data": "",
            "done": True,
            "status_code": 206,
            "step_time": 0.0,
            "context_id": "lk1",
        },
        {"type": "done", "done": True, "status_code": 200, "context_id": "lk1"},
    ]
    assert "lk1" not in session.refused and not session.calls  # nothing else reached the session
    assert IDLE_TIMEOUT_S == 300  # Cartesia's (and LiveKit's pool's) 5 minutes


async def _append(replies: list[dict[str, Any]], payload: dict[str, Any]) -> None:
    replies.append(payload)


# ---------------------------------------------------------------------------------------------- HTTP with timestamps
def test_stream_with_timestamps_lines_stay_short_and_add_no_characters() -> None:
    """Pipecat's HTTP reader refuses a line over 524,288 bytes: a long audio piece goes over several lines, the
    first carrying the timings; the alignment joined over the lines is the text, with no space added at its end."""
    import base64

    from api.protocols.elevenlabs.timed import FRAMING, LINE_AUDIO_BYTES
    from services.pipeline.timestamps import TimestampsEvent

    audio = bytes(range(256)) * 4000  # ~10.7 s of 24 kHz PCM in one piece
    stats = SimpleNamespace(sent_samples=len(audio) // 2)
    delivery = SimpleNamespace(
        job=SimpleNamespace(request=SimpleNamespace(sample_rate=24000), stats=stats, error=None),
        final_status="completed",
    )
    words = (WordSpan("Okay,", 0.0, 0.4), WordSpan("Bravo", 0.4, 0.8))
    later = (WordSpan("here.", 0.8, 1.2),)

    async def items() -> Any:
        yield TimestampsEvent(words, words)
        yield audio
        yield TimestampsEvent(later, later)

    async def collect() -> list[bytes]:
        return [line async for line in FRAMING[1](items(), delivery)]  # type: ignore[arg-type]

    lines = asyncio.run(collect())
    assert all(len(line) < 524_288 // 2 for line in lines)
    bodies = [json.loads(line) for line in lines]
    assert b"".join(base64.b64decode(b["audio_base64"]) for b in bodies) == audio
    assert len([b for b in bodies if b["audio_base64"]]) == -(-len(audio) // LINE_AUDIO_BYTES)
    assert bodies[0]["alignment"] is not None and bodies[1]["alignment"] is None
    characters = "".join(c for b in bodies if b["alignment"] for c in b["alignment"]["characters"])
    assert characters == "Okay, Bravo here."


# ---------------------------------------------------------------------------------------------- the log
def test_uvicorns_lines_are_json_too() -> None:
    """uvicorn installs plain-text handlers on its loggers before the app starts; the app's logging takes them over."""
    import io
    import logging.config

    import uvicorn.config

    from shared.logging import configure_logging

    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("INFO", json_lines=True)
        [handler] = [h for h in root.handlers if getattr(h, "_tts_handler", False)]
        stream = io.StringIO()
        handler.setStream(stream)  # type: ignore[attr-defined]
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
        logging.getLogger("uvicorn").info("Uvicorn running")
        lines = stream.getvalue().splitlines()
        assert [json.loads(line)["message"] for line in lines] == [
            "Started server process [7]",
            "Uvicorn running",
        ]
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


# ---------------------------------------------------------------------------------------------- pacing
def test_tokens_made_while_waiting_for_playback_go_out_in_paced_groups() -> None:
    """While a streaming job waits for playback the engine keeps generating; what it made meanwhile is decoded in
    groups of at most half TTS_STREAM_MAX_AHEAD_S, each waiting with its own audio counted, so the client holds at
    most about the setting (not the setting plus one message of several seconds)."""
    import numpy as np

    from core.guards.chunk import SAMPLES_PER_TOKEN
    from core.streaming import PlannedWindow
    from services.pipeline.audio_output import NATIVE_RATE
    from services.pipeline.synthesis import SynthesisJob

    tokens = round(0.5 * NATIVE_RATE / SAMPLES_PER_TOKEN)  # 0.5 s of audio per window
    windows = [PlannedWindow(np.zeros(tokens, np.int32), 0, tokens) for _ in range(10)]

    def groups(stream: bool) -> list[list[float]]:
        job = SimpleNamespace(
            request=SimpleNamespace(stream=stream, paced=stream, time_stretch=1.0),
            resources=SimpleNamespace(
                settings=SimpleNamespace(stream=SimpleNamespace(stream_max_ahead_s=3.0))
            ),
        )
        job._window_seconds = lambda w: SynthesisJob._window_seconds(job, w)  # type: ignore[arg-type]
        return [[job._window_seconds(w) for w in group] for group in SynthesisJob._paced_groups(job, windows)]  # type: ignore[arg-type]

    paced = groups(True)
    assert [len(g) for g in paced] == [3, 3, 3, 1] and [len(g) for g in groups(False)] == [10]
    # Each group waits until the client holds at most 3 s less the group's audio: never more than 3 s after it.
    assert all(sum(g) <= 1.5 + 1e-9 for g in paced)


def test_text_refused_mid_turn_gets_one_error_not_a_second_for_its_flush() -> None:
    """Out of credits at a piece of text: the refusal (error, end marker) ends the context; the same message's
    flush (Pipecat's Cartesia client sends `max_buffer_delay_ms: 0` on every message) or close is not answered with
    a second, spurious error ("No open context ... for 'flush'")."""
    from api.protocols.cartesia.socket import _Connection as CartesiaConnection

    class Broke(FakeSession):
        async def text(self, text: str, *, context_id: str | None) -> None:
            self.calls.append(("text", context_id, text))
            self.refused.remember(context_id)  # type: ignore[arg-type]
            self.open.pop(context_id, None)

    session = Broke()
    session.open["p"] = session.running["p"] = SimpleNamespace(
        characters=0, buffer_delay_s=None, wire_state={}
    )
    conn = CartesiaConnection(SimpleNamespace(), session, SimpleNamespace())  # type: ignore[arg-type]
    asyncio.run(
        conn.handle(
            json.dumps(
                {
                    "context_id": "p",
                    "transcript": "More words.",
                    "continue": False,
                    "max_buffer_delay_ms": 0,
                    "flush": True,
                }
            )
        )
    )
    assert session.calls == [("text", "p", "More words.")]

    el, session = connection({"auto_mode": "true"})
    send(el, {"text": " ", "context_id": "q"})
    session.text = Broke.text.__get__(session)  # type: ignore[method-assign]
    send(el, {"text": "More words.", "context_id": "q", "flush": True})
    assert session.calls[-1] == ("text", "q", "More words.")
