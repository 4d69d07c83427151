"""The host-path bench's sockets (bench/ws_speakers.py) speak each dialect as the server reads it, and count audio
and ends from messages the server's own codecs build."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from api.protocols.cartesia.requests import parse_client_message as parse_cartesia
from api.protocols.cartesia.responses import chunk_event, done_event, timestamps_event
from api.protocols.elevenlabs.requests import parse_client_message as parse_elevenlabs
from api.protocols.elevenlabs.requests import parse_output_format
from api.protocols.elevenlabs.responses import ElevenLabsWire
from api.protocols.native.requests import parse_message
from bench.ws_speakers import WS_TRANSPORTS, Heard, hear, path_of, turn

TEXT = "The quick brown fox, then 3 naps."


def test_native_turn_is_start_text_pieces_end() -> None:
    for timestamps in (False, True):
        parsed = [parse_message(m) for m in turn("ws", TEXT, "c", "fixed", timestamps)]
        kinds = [kind for kind, _ in parsed]
        assert kinds == ["start", *["text"] * len(TEXT.split()), "end"]
        start = parsed[0][1]
        assert (start.format, start.output_rate(), start.timestamps) == (
            "pcm",
            16000,
            "word" if timestamps else None,
        )
        assert "".join(m.text for k, m in parsed if k == "text") == TEXT + " "


def test_elevenlabs_turn_opens_sends_words_flushes_and_closes() -> None:
    messages = [parse_elevenlabs(m) for m in turn("elevenlabs", TEXT, "c7", "fixed")]
    assert messages[0].text == " " and messages[-2].flush and messages[-1].close_context
    assert {m.context_id for m in messages} == {"c7"}
    assert "".join(m.text or "" for m in messages[1:-2]) == TEXT + " "
    assert parse_output_format(path_of("elevenlabs", "fixed").split("output_format=")[1]).sample_rate == 16000


def test_cartesia_turn_continues_then_ends_raw_pcm_16k() -> None:
    for timestamps in (False, True):
        messages = [parse_cartesia(m) for m in turn("cartesia", TEXT, "c", "fixed", timestamps)]
        assert [m.continue_ for m in messages] == [True] * len(TEXT.split()) + [False]
        assert {
            (m.output_format.container, m.output_format.encoding, m.output_format.sample_rate)
            for m in messages
        } == {("raw", "pcm_s16le", 16000)}
        assert {m.add_timestamps for m in messages} == {timestamps}
        assert "".join(m.transcript for m in messages) == TEXT + " "


def test_every_dialect_asks_the_rate_it_is_given() -> None:
    """24 kHz, the frameworks' usual rate (through AP-BWE on the server): each dialect's own rate field says it."""
    assert parse_message(turn("ws", TEXT, "c", "fixed", sample_rate=24000)[0])[1].output_rate() == 24000
    assert (
        parse_output_format(path_of("elevenlabs", "fixed", 24000).split("output_format=")[1]).sample_rate
        == 24000
    )
    assert {
        parse_cartesia(m).output_format.sample_rate
        for m in turn("cartesia", TEXT, "c", "fixed", sample_rate=24000)
    } == {24000}


def test_hear_counts_audio_and_ends_from_the_servers_own_messages() -> None:
    audio = bytes(range(256)) * 5
    heard = Heard()
    assert not hear("cartesia", json.dumps(chunk_event(audio, "c")), heard)
    assert not hear("cartesia", json.dumps(timestamps_event([], "c")), heard)
    assert hear("cartesia", json.dumps(done_event("c")), heard)
    assert (heard.audio_bytes, heard.timing_messages, heard.error) == (len(audio), 1, None)

    u = SimpleNamespace(context_id="c", last_audio_span=(0.0, 0.04), wire_state={})
    codec = ElevenLabsWire(absolute_times=False)
    heard = Heard()
    for message in codec.audio(u, audio) + codec.context_ended("c"):
        done = hear("elevenlabs", json.dumps(message), heard)
    assert done and heard.audio_bytes == len(audio) and heard.error is None

    heard = Heard()
    assert not hear("ws", audio, heard)
    assert hear("ws", json.dumps({"type": "done"}), heard)
    assert heard.audio_bytes == len(audio)
    assert base64.b64encode(audio)  # the dialects' audio is base64 of the same bytes


def test_unknown_transport_is_refused() -> None:
    assert set(WS_TRANSPORTS) == {"ws", "elevenlabs", "cartesia"}
    with pytest.raises(ValueError):
        path_of("sse", "fixed")
    with pytest.raises(ValueError):
        turn("sse", TEXT, "c", "fixed")


def test_whole_sends_the_same_text_in_one_piece() -> None:
    native = [parse_message(m) for m in turn("ws", TEXT, "c", "fixed", whole=True)]
    assert [k for k, _ in native] == ["start", "text", "end"] and native[1][1].text == TEXT + " "
    eleven = [parse_elevenlabs(m) for m in turn("elevenlabs", TEXT, "c", "fixed", whole=True)]
    assert [m.text for m in eleven[:2]] == [" ", TEXT + " "] and eleven[-1].close_context
    cartesia = [parse_cartesia(m) for m in turn("cartesia", TEXT, "c", "fixed", whole=True)]
    assert [(m.transcript, m.continue_) for m in cartesia] == [(TEXT + " ", True), ("", False)]
