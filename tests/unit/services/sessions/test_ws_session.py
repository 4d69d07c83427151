"""WebSocket session logic without a web server: text cutting, the single writer, and utterances on the demo model."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.protocols.native.responses import NativeWire
from processing.segmenter import TextSegmenter
from services.pipeline.synthesis import SamplingOptions, SynthesisError, SynthesisRequest
from services.sessions.ws_outbox import ClientStalled, Outbox
from services.sessions.ws_session import WsSession
from services.usage.accounting import RequestReport


# ---------------------------------------------------------------------------------------------- segmenter
def feed(segmenter: TextSegmenter, pieces: list[str]) -> list[str]:
    parts: list[str] = []
    for piece in pieces:
        parts += segmenter.push(piece)
    return parts


def test_a_sentence_is_cut_once_whitespace_follows_its_end() -> None:
    seg = TextSegmenter()
    assert feed(seg, ["Hello", " there", " friend."]) == []  # "friend." might still be "friend.com"
    assert seg.push(" How") == ["Hello there friend."]
    assert seg.pending == "How"
    assert seg.flush() == ["How"] and seg.flush() == []


def test_short_sentences_wait_for_company() -> None:
    seg = TextSegmenter(min_words=3)
    assert seg.push("Hi. ") == []
    assert seg.push("Yes, I am here! Next") == ["Hi. Yes, I am here!"]


def test_numbers_abbreviations_and_initials_do_not_end_sentences() -> None:
    seg = TextSegmenter()
    assert seg.push("It costs 3.5 dollars and ") == []
    assert seg.push("I met Dr. Smith and J. R. Tolkien at noon. Then") == [
        "It costs 3.5 dollars and I met Dr. Smith and J. R. Tolkien at noon."
    ]


def test_indic_and_cjk_full_stops_end_sentences() -> None:
    seg = TextSegmenter()
    assert seg.push("नमस्ते दोस्त आप कैसे हैं। और") == ["नमस्ते दोस्त आप कैसे हैं।"]
    seg = TextSegmenter()
    assert seg.push("你好，我是一个语音助手。今天") == ["你好，我是一个语音助手。"]
    assert seg.pending == "今天"


def test_a_run_on_buffer_is_cut_between_words_into_bounded_parts() -> None:
    seg = TextSegmenter(threshold=220, target=170)
    words = [f"word{i}" for i in range(150)]
    parts = feed(seg, [w + " " for w in words])
    assert parts and all(len(p) <= 170 for p in parts)
    assert len(seg.pending) <= 220
    assert " ".join(parts + seg.flush()).split() == words


def test_any_split_into_pieces_keeps_every_word_in_order() -> None:
    text = (
        "Dr. Brown paid $3.50 at 10 a.m. today! Was it worth it? Perhaps... [laughs] We will see. "
        "A very long clause follows here, with commas, dashes - and more words than fit in one part, "
        "so that it has to be cut somewhere sensible before the end of it all. The end."
    )
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), 12))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        seg = TextSegmenter(threshold=80, target=60)
        parts = feed(seg, pieces) + seg.flush()
        assert " ".join(parts).split() == text.split()
        assert all(p.strip() == p and p for p in parts)


# ---------------------------------------------------------------------------------------------- outbox
class FakeSocket:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.sent: list[Any] = []
        self.delay_s = delay_s
        self.block = asyncio.Event()
        self.block.set()

    async def send_text(self, data: str) -> None:
        await self.block.wait()
        await asyncio.sleep(self.delay_s)
        self.sent.append(json.loads(data))

    async def send_bytes(self, data: bytes) -> None:
        await self.block.wait()
        await asyncio.sleep(self.delay_s)
        self.sent.append(data)


class FakeOwner:
    def __init__(self) -> None:
        self.cancelled = False
        self.sizes: list[int] = []

    def delivered(self, size: int) -> None:
        self.sizes.append(size)


async def test_outbox_replies_overtake_queued_audio_and_stream_order_holds() -> None:
    sock = FakeSocket()
    sock.block.clear()
    outbox = Outbox(sock, max_items=8)
    outbox.start()
    owner = FakeOwner()
    await outbox.send({"type": "started"}, owner=owner)
    await asyncio.sleep(0.01)  # the writer takes it and blocks in the socket
    for i in range(3):
        await outbox.audio(bytes([i]) * 4, owner=owner)
    await outbox.reply({"type": "pong"})
    await asyncio.sleep(0.01)
    sock.block.set()
    assert await outbox.drain(2.0)
    # The writer had already taken "started" when the pong was queued; the pong then overtook the audio.
    assert sock.sent == [{"type": "started"}, {"type": "pong"}, b"\x00" * 4, b"\x01" * 4, b"\x02" * 4]
    assert owner.sizes == [4, 4, 4]
    await outbox.close()


async def test_outbox_drops_what_a_cancelled_owner_still_has_queued() -> None:
    sock = FakeSocket()
    sock.block.clear()
    outbox = Outbox(sock, max_items=8)
    outbox.start()
    owner, other = FakeOwner(), FakeOwner()
    for _ in range(4):
        await outbox.audio(b"aa", owner=owner)
    await outbox.send({"type": "started"}, owner=other)
    await asyncio.sleep(0.01)
    owner.cancelled = True
    sock.block.set()
    assert await outbox.drain(2.0)
    assert sock.sent == [b"aa", {"type": "started"}]  # the frame already being sent, then the other owner's
    assert outbox.skipped == 3
    await outbox.close()


async def test_outbox_is_bounded_so_a_slow_reader_pauses_the_producer() -> None:
    sock = FakeSocket()
    sock.block.clear()
    outbox = Outbox(sock, max_items=2)
    outbox.start()
    await outbox.audio(b"1")
    await asyncio.sleep(0.01)  # the writer holds frame 1
    await outbox.audio(b"2")
    await outbox.audio(b"3")
    blocked = asyncio.create_task(outbox.audio(b"4"))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    sock.block.set()
    await asyncio.wait_for(blocked, 2.0)
    assert await outbox.drain(2.0)
    assert sock.sent == [b"1", b"2", b"3", b"4"]
    await outbox.close()


async def test_outbox_cuts_off_a_client_that_stops_reading() -> None:
    sock = FakeSocket()
    sock.block.clear()
    outbox = Outbox(sock, max_items=2, send_timeout_s=0.1)
    writer = outbox.start()
    await outbox.audio(b"never read")
    with pytest.raises(ClientStalled):
        await asyncio.wait_for(writer, 2.0)
    assert isinstance(outbox.failure, ClientStalled) and outbox.closed
    await outbox.audio(b"after")  # a closed outbox drops instead of blocking
    await outbox.close()


# ---------------------------------------------------------------------------------------------- sessions
@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path) -> Iterator[Any]:
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings

    settings = Settings(
        model_dir=demo_model_dir, device="cpu", warmup=False, sr_enabled=False, auth_enabled=False
    )
    rt = ModelRuntime(settings)
    asyncio.run(rt.start())
    assert rt.ready, rt.error
    yield rt
    asyncio.run(rt.shutdown())


class RecordingGate:
    def __init__(self, refuse: SynthesisError | None = None) -> None:
        self.refuse = refuse
        self.charged: list[int] = []
        self.admitted: list[str] = []
        self.key_id: str | None = "k-test"
        self.settled: list[tuple[str, RequestReport | None]] = []
        self.billable: list[int] = []

    async def charge_text(self, utterance_id: str, characters: int) -> None:
        self.charged.append(characters)

    async def admit(self, utterance_id: str) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.admitted.append(utterance_id)

    def settle(self, utterance_id: str, report: RequestReport | None, billable_characters: int = 0) -> None:
        self.settled.append((utterance_id, report))
        self.billable.append(billable_characters)

    @property
    def statuses(self) -> list[str]:
        """How each settled utterance ended ("refused": never admitted, no report)."""
        return ["refused" if report is None else report.status for _, report in self.settled]


def request_for(runtime: Any, **overrides: Any) -> SynthesisRequest:
    s = runtime.settings
    fields: dict[str, Any] = dict(
        request_id="",
        text="",
        voice=runtime.voices.resolve(None),
        audio_format="pcm",
        sample_rate=16000,
        sampling=SamplingOptions(
            s.sampling.default_temperature,
            s.sampling.default_top_k,
            s.sampling.default_top_p,
            400,
            s.sampling.default_repetition_penalty,
            seed=1,
        ),
    )
    fields.update(overrides)
    return SynthesisRequest(**fields)


def events(sock: FakeSocket) -> list[dict[str, Any]]:
    return [m for m in sock.sent if isinstance(m, dict)]


async def wait_for_event(sock: FakeSocket, kind: str, timeout_s: float = 60.0) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            for event in events(sock):
                if event["type"] == kind:
                    return event
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), timeout_s)


def new_session(runtime: Any, gate: Any) -> tuple[WsSession, FakeSocket, Outbox]:
    sock = FakeSocket()
    outbox = Outbox(sock, max_items=4)
    outbox.start()
    return WsSession(runtime, outbox, gate, connection_id="c1", wire=NativeWire()), sock, outbox


async def test_an_utterance_from_pieces_is_settled_once_with_its_totals(runtime: Any) -> None:
    gate = RecordingGate()
    session, sock, outbox = new_session(runtime, gate)
    await session.start(request_for(runtime))
    for piece in ["Good", " morning", " to you.", " And", " goodbye"]:
        await session.text(piece)
    await session.end()
    done = await wait_for_event(sock, "done")
    audio = b"".join(m for m in sock.sent if isinstance(m, bytes))
    assert events(sock)[0]["type"] == "started"
    assert done["audio_bytes"] == len(audio) and done["text_chunks"] == 2
    assert gate.charged == [4, 8, 8, 4, 8] and gate.admitted == ["c1-u1"]
    await asyncio.sleep(0.05)
    [(_, outcome)] = gate.settled
    assert outcome is not None and outcome.status == "completed" and outcome.bytes_sent == len(audio)
    # The request log sees the whole text.
    assert outcome.job.request.text == "Good morning to you. And goodbye"
    assert session.open_utterance is None
    await outbox.close()


async def test_a_refused_utterance_gets_an_error_and_the_session_goes_on(runtime: Any) -> None:
    gate = RecordingGate(refuse=SynthesisError("RATE_LIMIT_EXCEEDED", "Rate limit of 2 requests per minute"))
    session, sock, outbox = new_session(runtime, gate)
    await session.start(request_for(runtime), text="Hello there, how are you?", end=True)
    error = await wait_for_event(sock, "error")
    assert error["error"]["code"] == "RATE_LIMIT_EXCEEDED" and error["utterance_id"] == "c1-u1"
    await asyncio.sleep(0.05)
    assert gate.statuses == ["refused"]
    assert session.open_utterance is None  # the next 'start' is welcome
    await session.ping(1)
    assert (await wait_for_event(sock, "pong"))["id"] == 1
    await outbox.close()


async def test_cancel_and_close_abort_generation(runtime: Any) -> None:
    gate = RecordingGate()
    session, sock, outbox = new_session(runtime, gate)
    long_text = "This goes on and on for quite some time, sentence after sentence. " * 6
    await session.start(request_for(runtime), text=long_text)
    while not any(isinstance(m, bytes) for m in sock.sent):
        await asyncio.sleep(0.01)
    await session.cancel()
    cancelled = await wait_for_event(sock, "cancelled", 2.0)
    assert cancelled["utterance_id"] == "c1-u1"
    assert gate.statuses[-1] == "cancelled"
    for _ in range(200):
        if not runtime.engine.active_requests():
            break
        await asyncio.sleep(0.01)
    assert not runtime.engine.active_requests()

    await session.start(request_for(runtime), text=long_text)
    while session.utterances()[0].audio_bytes == 0:
        await asyncio.sleep(0.01)
    await session.close()
    assert gate.statuses[-1] == "disconnected"
    for _ in range(200):
        if not runtime.engine.active_requests():
            break
        await asyncio.sleep(0.01)
    assert not runtime.engine.active_requests()
    await outbox.close()


@pytest.mark.parametrize("by_server", [True, False])
async def test_a_socket_the_server_ends_charges_only_the_audio_that_reached_it(
    runtime: Any, by_server: bool
) -> None:
    """Fair charge: a reader that stops reading while a long utterance streams, and the server ends the
    socket (a stall, a broken message rule) or the client closes it: the utterance is charged for the characters the
    audio that reached the socket covers, never for text whose audio never got there (the cut-chunk rule; one price
    for a clean close and a reset)."""
    gate = RecordingGate()
    session, sock, outbox = new_session(runtime, gate)
    text = " ".join(f"Sentence number {i} of a story that goes on for quite a while." for i in range(20))
    await session.start(request_for(runtime), text=text, end=True)
    while sum(isinstance(m, bytes) for m in sock.sent) < 2:
        await asyncio.sleep(0.01)
    sock.block.clear()  # the client stops reading: frames queue up, generation pauses behind them
    u = session.utterances()[0]
    await asyncio.sleep(0.3)
    await session.close(by_server=by_server)
    await outbox.close()
    [billable] = gate.billable
    received = sum(len(m) for m in sock.sent if isinstance(m, bytes))
    assert u.delivered_s == pytest.approx(received / 2 / 16000, abs=1e-6)
    # Text chunks the received audio reached (crossfades only shorten the audio, so this is generous).
    reached, heard = 0, received / 2
    for chunk, samples in zip(u.job.plan.chunks, u.job.stats.decoded_samples_per_chunk, strict=False):
        reached += len(chunk)
        heard -= samples
        if heard <= 0:
            break
    assert 1 <= billable <= reached < u.spoken_characters, (billable, reached, u.spoken_characters)


async def test_protocol_mistakes_are_answered_not_fatal(runtime: Any) -> None:
    gate = RecordingGate()
    session, sock, outbox = new_session(runtime, gate)
    await session.text("before any start")
    await session.start(request_for(runtime))
    await session.start(request_for(runtime))  # the first is still open
    await session.end()  # nothing to speak
    await asyncio.sleep(0.1)
    errors = [e["error"] for e in events(sock) if e["type"] == "error"]
    assert [e["param"] for e in errors] == ["type", "type", "text"]
    assert gate.statuses == ["refused"]
    await outbox.close()


def test_deeply_nested_json_is_a_client_error() -> None:
    from api.errors import ApiError
    from api.protocols.native.requests import parse_message

    with pytest.raises(ApiError) as info:
        parse_message("[" * 100_000 + "]" * 100_000)
    assert info.value.code == "INVALID_JSON" and "nests too deeply" in info.value.message


# The gate's credit blocks (reserved after settlement, cancelled mid-reserve): tests/unit/services/access/test_access_gate.py.


async def test_normalize_verbose_hands_the_normalised_text_back(runtime: Any) -> None:
    session, sock, outbox = new_session(runtime, RecordingGate())
    await session.start(request_for(runtime, normalize_verbose=True), text="I have 3 apples.", end=True)
    done = await wait_for_event(sock, "done")
    started = events(sock)[0]
    assert started["type"] == "started" and started["normalized_text"] == "I have three apples."
    assert done["normalized_text"] == "I have three apples."
    await session.start(request_for(runtime), text="Just 2.", end=True)  # not asked: not sent
    for _ in range(600):
        dones = [e for e in events(sock) if e["type"] == "done"]
        if len(dones) == 2:
            break
        await asyncio.sleep(0.1)
    assert len(dones) == 2 and "normalized_text" not in dones[1]
    await outbox.close()


async def test_a_context_cuts_its_text_chunks_at_the_streaming_cap(runtime: Any) -> None:
    """The LLM generates a whole text chunk even while playback pacing holds its audio, so a context's chunks hold
    at most TTS_STREAM_CHUNK_MAX_CHARS characters (cut at clause marks here); shorter sentences stay whole."""
    from services.sessions.utterance import Utterance

    long = (
        "The museum is open every day from nine in the morning until six in the evening, except on public "
        "holidays, when it closes at two, and the guided tours, which start at the main entrance every hour, "
        "are free for members."
    )
    short = "Sure, I can help with that."
    u = Utterance(
        runtime.pipeline_resources(),
        request_for(runtime, request_id="u-cap", stream=True),
        max_text_chars=5000,
    )
    for word in (long + " " + short).split(" "):
        u.add_text(word + " ")
    u.end()
    chunks = u.job.plan.chunks
    cap = runtime.settings.text.stream_chunk_max_chars
    assert len(long) > cap and all(len(c) <= cap for c in chunks), chunks
    assert chunks[-1] == short and all(c.rstrip().endswith((",", ".")) for c in chunks), chunks
    assert " ".join(chunks).split() == (long + " " + short).split()
