"""The barge-in rules of a dialect's socket, on the session core with the demo model and a simulated clock: a
context opening after an earlier one's client fell silent stops it; one opening right after (a reply queued on
purpose) lets both speak; a refusal ends its context with its end marker, a text with nothing to speak with a short
silence and its end marker."""

from __future__ import annotations

import asyncio
from typing import Any

from api.protocols.cartesia.responses import CartesiaWire
from api.protocols.elevenlabs.responses import ElevenLabsWire
from services.pipeline.synthesis import SynthesisError
from services.sessions.ws_outbox import Outbox
from services.sessions.ws_session import WsSession
from tests.unit.services.sessions.test_ws_session import FakeSocket, RecordingGate, request_for
from tests.unit.services.sessions.test_ws_session import runtime as runtime  # noqa: F401 - the module's demo-model fixture

LONG = "This answer goes on and on for quite some time, sentence after sentence after sentence. " * 4


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def dialect_session(runtime: Any, gate: Any, wire: Any = None) -> tuple[WsSession, FakeSocket, Outbox, Clock]:
    sock, clock = FakeSocket(), Clock()
    outbox = Outbox(sock, max_items=4)
    outbox.start()
    session = WsSession(
        runtime,
        outbox,
        gate,
        connection_id="c1",
        wire=wire or ElevenLabsWire(absolute_times=False),
        serial=False,
        max_open=5,
        max_unfinished=5,
        supersede_after_s=0.5,
        dialect="elevenlabs",
        clock=clock,
    )
    return session, sock, outbox, clock


def of(sock: FakeSocket, cid: str) -> list[dict[str, Any]]:
    return [
        m for m in sock.sent if isinstance(m, dict) and (m.get("contextId") or m.get("context_id")) == cid
    ]


async def until(predicate: Any, timeout_s: float = 120.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


def final(sock: FakeSocket, cid: str) -> bool:
    return any(m.get("isFinal") is True for m in of(sock, cid))


async def test_a_context_opening_after_the_earlier_one_fell_silent_stops_it(runtime: Any) -> None:
    gate = RecordingGate()
    session, sock, outbox, clock = dialect_session(runtime, gate)
    await session.start(request_for(runtime), context_id="turn1", text=LONG, end=True)
    await until(lambda: any(m.get("audio") for m in of(sock, "turn1")))
    clock.now += 2.0  # the user speaks, the LLM answers: the next turn's context opens
    await session.start(request_for(runtime), context_id="turn2", text="Sure.", end=True)
    await until(lambda: final(sock, "turn2"))
    ids = [m.get("contextId") for m in sock.sent if isinstance(m, dict)]
    # turn1's isFinal is its last message, and it went out before anything of turn2
    assert ids.index("turn1", ids.index("turn1") + 0) < ids.index("turn2")
    last_turn1 = len(ids) - 1 - ids[::-1].index("turn1")
    assert (
        sock.sent[[i for i, m in enumerate(sock.sent) if isinstance(m, dict)][last_turn1]].get("isFinal")
        is True
    )
    assert last_turn1 < ids.index("turn2")
    assert [u for u, _ in gate.settled][0] == "c1-u1"
    await until(lambda: len(gate.statuses) == 2)
    assert gate.statuses == ["cancelled", "completed"]
    await until(lambda: not runtime.engine.active_requests(), 5.0)
    await outbox.close()


async def test_a_reply_queued_right_after_the_turn_is_spoken_whole(runtime: Any) -> None:
    gate = RecordingGate()
    session, sock, outbox, clock = dialect_session(runtime, gate)
    await session.start(
        request_for(runtime), context_id="llm", text="Hello there. How are you today?", end=True
    )
    clock.now += 0.05  # Pipecat's TTSSpeakFrame, queued behind the LLM turn
    await session.start(request_for(runtime), context_id="speak", text="One more thing.", end=True)
    await until(lambda: final(sock, "llm") and final(sock, "speak"))
    assert sorted(gate.statuses) == ["completed", "completed"]
    await outbox.close()


async def test_a_context_still_taking_text_is_superseded_too(runtime: Any) -> None:
    """Pipecat interrupted while the LLM streamed: its context never gets close_context."""
    gate = RecordingGate()
    session, sock, outbox, clock = dialect_session(runtime, gate)
    await session.start(request_for(runtime), context_id="turn1", text="The first sentence is here. And then")
    clock.now += 1.0
    await session.start(request_for(runtime), context_id="turn2", text="Next.", end=True)
    await until(lambda: final(sock, "turn2"))
    assert final(sock, "turn1") and session.utterance("turn1") is None
    await until(lambda: len(gate.statuses) == 2)
    assert gate.statuses[0] in ("cancelled", "refused")  # refused: stopped before it was admitted
    await outbox.close()


async def test_a_refusal_ends_the_context_with_its_end_marker(runtime: Any) -> None:
    gate = RecordingGate(refuse=SynthesisError("TOO_MANY_CONCURRENT_REQUESTS", "At most 1 stream"))
    session, sock, outbox, _ = dialect_session(runtime, gate)
    await session.start(request_for(runtime), context_id="a", text="Hello there.", end=True)
    await until(lambda: final(sock, "a"))
    kinds = ["error" if m.get("error") else "final" for m in of(sock, "a")]
    assert kinds == ["error", "final"]
    # A refused piece of text ends its context too (Pipecat then ends the turn at once).
    gate.refuse = None
    await session.start(request_for(runtime), context_id="b", text="x")
    await session.text("y" * (session.max_text_chars + 1), context_id="b")
    await until(lambda: final(sock, "b"))
    assert [m.get("code") for m in of(sock, "b") if m.get("error")] == ["TEXT_TOO_LONG"]
    assert session.utterance("b") is None
    await outbox.close()


async def test_text_with_nothing_to_speak_ends_with_a_short_silence(runtime: Any) -> None:
    """Pipecat counts a context that ends without audio as a failure (three in a row disable it): emoji or
    punctuation alone get NOTHING_TO_SPEAK_S of silence, then the end marker; nothing is charged."""
    import base64

    from services.sessions.utterance import NOTHING_TO_SPEAK_S

    for wire, marker, key in (
        (ElevenLabsWire(absolute_times=False), "isFinal", "audio"),
        (CartesiaWire(), "done", "data"),
    ):
        gate = RecordingGate()
        session, sock, outbox, _ = dialect_session(runtime, gate, wire)
        request = request_for(runtime)
        await session.start(request, context_id="e", text="🙂 ... !!", end=True)
        await until(lambda: any(m.get(marker) is True for m in of(sock, "e")))  # noqa: B023
        assert not [m for m in of(sock, "e") if m.get("error") or m.get("type") == "error"]
        audio = b"".join(base64.b64decode(m[key]) for m in of(sock, "e") if m.get(key))
        assert (
            audio == bytes(len(audio)) and len(audio) == round(NOTHING_TO_SPEAK_S * request.sample_rate) * 2
        )
        assert of(sock, "e")[-1].get(marker) is True
        assert gate.statuses == ["refused"]  # never admitted, nothing charged
        await outbox.close()


class SlotGate(RecordingGate):
    """Records when an utterance gives its slot back and takes one again."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: list[tuple[str, str]] = []

    async def pause(self, utterance_id: str) -> None:
        self.slots.append(("pause", utterance_id))

    async def resume(self, utterance_id: str) -> None:
        self.slots.append(("resume", utterance_id))


def idle_gauge(kind: str) -> float:
    from shared import metrics

    return metrics.WS_IDLE.labels("elevenlabs", kind)._value.get()


async def test_an_open_context_holds_a_slot_only_while_it_generates(runtime: Any) -> None:
    gate = SlotGate()
    contexts, sockets = idle_gauge("context"), idle_gauge("socket")
    session, sock, outbox, _ = dialect_session(runtime, gate)
    assert idle_gauge("socket") == sockets + 1  # a socket with nothing to say
    await session.start(request_for(runtime), context_id="a", text="Hello there, my friend. ")
    await session.flush(context_id="a", quiet=True)
    await until(lambda: gate.slots == [("pause", "c1-u1")])  # the LLM thinks: the context waits, slot free
    assert idle_gauge("context") == contexts + 1 and idle_gauge("socket") == sockets + 1
    await session.text("How are you today? ", context_id="a")
    await session.flush(context_id="a", quiet=True)
    assert gate.slots[1] == ("resume", "c1-u1")
    assert idle_gauge("context") == contexts and idle_gauge("socket") == sockets
    await session.end(context_id="a")
    await until(lambda: final(sock, "a"))
    await until(lambda: gate.statuses == ["completed"])
    await session.close()
    assert (idle_gauge("context"), idle_gauge("socket")) == (contexts, sockets)
    await outbox.close()
