"""ElevenLabs' `enable_ssml_parsing`: the SSML subset (processing/ssml.py) and, through the real app's WebSocket, a
`<break>` that is real silence of its length in the audio; with the flag off the text is read as before.

The app runs the demo checkpoint with greedy decoding and no guards, so the same text gives the same speech tokens:
the audio with a break is longer by exactly the break."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from api import create_app
from processing.ssml import MAX_BREAK_S, BreakBudget, parse_ssml, ssml_problem
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal

RATE = 16_000


def test_breaks_become_pauses_and_other_tags_their_text() -> None:
    assert parse_ssml('Hello <break time="1.5s"/> there.') == ["Hello ", 1.5, " there."]
    assert parse_ssml("A<break time='250ms' />B") == ["A", 0.25, "B"]
    assert parse_ssml('Wait <break time="10s"/>') == ["Wait ", MAX_BREAK_S]  # ElevenLabs' cap
    assert parse_ssml('<break strength="strong"/>Go<break/>') == [0.75, "Go", 0.5]
    assert parse_ssml('<break time="2s"/><break time="2s"/>x') == [MAX_BREAK_S, "x"]  # one silence, capped
    assert parse_ssml('<speak><prosody rate="slow">Say <emphasis>this</emphasis></prosody></speak>') == [
        "Say this"
    ]
    assert parse_ssml('I say <phoneme alphabet="cmu-arpabet" ph="T AH0 M EY1 T OW2">tomato</phoneme>.') == [
        "I say tomato."
    ]
    assert parse_ssml("Fish &amp; chips, 3 &lt; 4") == ["Fish & chips, 3 < 4"]
    assert parse_ssml('<break time="0s"/>') == []
    assert parse_ssml("no tags at all") == ["no tags at all"]


@pytest.fixture(scope="module")
def client(demo_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        default_top_k=1,
        default_max_tokens=40,
        guard_mode="off",
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        wait_in_portal(test_client, lambda: runtime.ready)
        yield test_client


def _speak(client: TestClient, text: str, *, ssml: bool) -> tuple[np.ndarray, str]:
    """One ElevenLabs stream-input context: the audio (16 kHz PCM) and the text its alignment covers."""
    path = (
        f"/v1/text-to-speech/default/stream-input?output_format=pcm_{RATE}"
        f"&enable_ssml_parsing={'true' if ssml else 'false'}"
    )
    audio, chars = b"", []
    with client.websocket_connect(path) as ws:
        for message in ({"text": " "}, {"text": text}, {"text": ""}):
            ws.send_text(json.dumps(message))
        while not (message := json.loads(ws.receive_text())).get("isFinal"):
            assert "error" not in message, message
            audio += base64.b64decode(message["audio"])
            chars += (message.get("alignment") or {}).get("chars", [])
    return np.frombuffer(audio, "<i2"), "".join(chars)


def _longest_zero_run(samples: np.ndarray) -> int:
    longest = run = 0
    for value in samples:
        run = run + 1 if value == 0 else 0
        longest = max(longest, run)
    return longest


def test_an_ssml_break_is_silence_of_its_length_and_only_with_the_flag(client: TestClient) -> None:
    first, second = "Hello there my friend.", "How are you today?"
    plain, _ = _speak(client, f"{first} {second}", ssml=True)
    broken, spoken = _speak(client, f'{first} <break time="1.5s"/> {second}', ssml=True)
    assert broken.size - plain.size == int(1.5 * RATE)  # the same speech, and 1.5 s of silence more
    assert (
        _longest_zero_run(broken) >= int(1.4 * RATE) > _longest_zero_run(plain)
    )  # the crossfade takes a little
    assert "<" not in spoken and "break" not in spoken
    one_cut, _ = _speak(
        client, f"{first} {second} ", ssml=True
    )  # a space after "?": one cut of both sentences
    trailing, _ = _speak(
        client, f'{first} {second} <break time="0.5s"/>', ssml=True
    )  # after the last words too
    assert trailing.size - one_cut.size == int(0.5 * RATE) and not trailing[-int(0.45 * RATE) :].any()
    phoneme, spoken = _speak(client, f'{first} <phoneme alphabet="ipa" ph="x">{second}</phoneme>', ssml=True)
    assert phoneme.size == plain.size and "phoneme" not in spoken  # read as its text
    # enable_ssml_parsing=false: the tag is text for the normaliser, as before; no silence is made
    audio, spoken = _speak(client, f'{first} <break time="1.5s"/> {second}', ssml=False)
    assert _longest_zero_run(audio) < int(0.5 * RATE) and "<break" in spoken


# --- bounds on silence and properties of the parser ----------------------------------------------------------


def test_breaks_with_only_punctuation_between_are_one_gap_and_a_request_has_a_total() -> None:
    budget = BreakBudget(total_s=7.0)
    granted = [budget.take(3.0)]
    for _ in range(2):
        budget.note_text(". ")  # punctuation alone does not end the gap
        granted.append(budget.take(3.0))
    assert granted == [3.0, 0.0, 0.0]
    budget.note_text("Words.")
    assert [budget.take(2.5), budget.take(1.0)] == [2.5, 0.5]
    budget.note_text("More")
    assert budget.take(3.0) == 1.0  # the request's 7 s are spent
    budget.note_text("Again")
    assert budget.take(3.0) == 0.0 and budget.used_s == 7.0


@given(
    st.lists(st.one_of(st.floats(0, 10), st.sampled_from(["x", ".", " ", "1", "!?"])), max_size=60),
    st.floats(0, 100),
)
def test_a_break_budget_never_grants_more_than_its_bounds(items: list[float | str], total: float) -> None:
    budget = BreakBudget(total_s=total)
    gap = granted_total = 0.0
    for item in items:
        if isinstance(item, str):
            budget.note_text(item)
            gap = 0.0 if any(c.isalnum() for c in item) else gap
            continue
        granted = budget.take(item)
        assert 0.0 <= granted <= item
        gap += granted
        granted_total += granted
        assert gap <= MAX_BREAK_S + 1e-9
    assert granted_total <= total + 1e-9


_SSML_PIECE = st.one_of(
    st.text(st.sampled_from(list("ab .,&;<>\"'")), max_size=12),
    st.sampled_from(
        [
            '<break time="1.5s"/>',
            "<break/>",
            '<break time="900ms" />',
            '<break strength="weak"/>',
            '<break time="20s"/>',
            "<speak>",
            "</speak>",
            '<prosody rate="slow">',
            "</prosody>",
            "&amp;",
            '<phoneme ph="x">',
            "</phoneme>",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_SSML_PIECE, max_size=20))
def test_parse_ssml_alternates_text_and_bounded_pauses(pieces: list[str]) -> None:
    out = parse_ssml("".join(pieces))
    for item in out:
        assert (isinstance(item, str) and item) or (isinstance(item, float) and 0 < item <= MAX_BREAK_S)
    assert all(type(a) is not type(b) for a, b in zip(out, out[1:], strict=False))  # neighbours merged
    assert "<break" not in "".join(i for i in out if isinstance(i, str))


def test_breaks_between_punctuation_stay_within_the_gap_cap_over_the_socket(client: TestClient) -> None:
    """19,010 characters of `<break time="3s"/>.` made 48 min of audio: now one gap is at most 3 s."""
    first, second = "Hello there my friend.", "How are you today?"
    plain, _ = _speak(client, f"{first} {second}", ssml=True)
    padded, _ = _speak(client, f"{first} " + '<break time="3s"/>. ' * 6 + second, ssml=True)
    # 3 s of silence and whatever the model makes of the lone dots (before: 6 x 3 s)
    assert _longest_zero_run(padded) <= int(MAX_BREAK_S * RATE)
    assert padded.size - plain.size < int((MAX_BREAK_S + 1.0) * RATE)


def test_a_request_has_a_total_silence_cap_over_the_socket(client: TestClient, monkeypatch) -> None:
    runtime = client.app.state.runtime
    monkeypatch.setattr(
        runtime, "settings", runtime.settings.model_copy(update={"ssml_max_total_break_s": 2.0})
    )
    words = ["One.", "Two.", "Three.", "Four."]
    broken, _ = _speak(client, ' <break time="1.5s"/> '.join(words), ssml=True)  # 4.5 s asked for
    assert int(1.8 * RATE) <= _silence(broken) <= int(2.0 * RATE)


def _silence(samples: np.ndarray, least: int = RATE // 10) -> int:
    """Samples in runs of exact zeros at least `least` long (made silence, not quiet speech)."""
    total = run = 0
    for value in [*samples, 1]:
        if value == 0:
            run += 1
            continue
        total += run if run >= least else 0
        run = 0
    return total


def test_ssml_arriving_in_pieces_is_read_before_it_is_cut() -> None:
    from processing.ssml import SsmlReader

    reader = SsmlReader()
    assert reader.push("Hello <break ti") == ["Hello "]  # the tag waits for its end
    assert reader.push('me="1s"/> there &am') == [1.0, " there "]
    assert reader.push("p; more") == ["& more"]
    assert reader.push("3 < 4 and x <") == ["3 < 4 and x "]  # "< 4" is no tag; a bare "<" at the end waits
    assert reader.flush() == ["<"]  # never closed: text
    assert reader.push("a <b" + "c" * 2000) == ["a <b" + "c" * 2000]  # past MAX_TAG_CHARS: text, not held


def test_a_break_where_the_stream_cut_falls_is_never_spoken_nor_charged(client: TestClient) -> None:
    """A run-on message longer than a stream chunk (120 characters) is cut between words; a tag there used to be
    cut in two and read aloud ("break time three s") and charged as text. SSML is read before the cut now."""
    words = "one two three four five six seven eight nine ten " * 2  # 100 characters, no sentence end
    text = words + 'and then <break time="1.5s"/> after the pause we go on speaking for a while longer'
    broken, spoken = _speak(client, text, ssml=True)
    assert "break" not in spoken and "time" not in spoken and "<" not in spoken
    assert _longest_zero_run(broken) >= int(1.4 * RATE)


def test_a_keys_break_silence_is_bounded_per_minute_across_its_requests() -> None:
    """Sixty contexts a minute of breaks made an hour of audio a minute: the silence one key's requests may add
    together refills at MAX_BREAK_S_PER_MINUTE a minute, on a simulated clock."""
    from processing.ssml import SilenceWindow
    from services.pipeline.silence_quota import SilenceWindows

    now = [0.0]
    window = SilenceWindow(per_minute=10.0, clock=lambda: now[0])
    granted = []
    for _ in range(6):  # six requests, each asking for one 3 s gap, all at once
        budget = BreakBudget(total_s=60.0, window=window)
        granted.append(budget.take(3.0))
    assert granted == [3.0, 3.0, 3.0, 1.0, 0.0, 0.0]
    now[0] = 30.0  # half a minute later: half the minute's silence is back
    assert BreakBudget(total_s=60.0, window=window).take(MAX_BREAK_S) == 3.0
    assert window.take(9.0) == pytest.approx(2.0)
    windows = SilenceWindows(capacity=2)
    assert windows.of("a") is windows.of("a") and windows.of("a") is not windows.of("b")
    first = windows.of("a")
    windows.of("b"), windows.of("c")  # "a" is the least recently used: forgotten
    assert windows.of("a") is not first


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '<speak>Hi <break time="5s"/> there</speak>',
            ['<break time="5s"/> at position 10', "5 s", "at most 3 s"],
        ),
        ('Hi <break time="3500ms"/>.', ["3.5 s", "at most 3 s"]),
        (
            '<sub alias="World Wide Web">WWW and the rest.',
            ['<sub alias="World Wide Web"> at position 0', "</sub>"],
        ),
        ('A <say-as interpret-as="digits">12 and more', ["never closed", "</say-as>"]),
        ('Hello <break time="1s" there', ["'<break' at position 6", "no closing '>'"]),
        ('Hello <brake time="1s"/> there', ['<brake time="1s"/> at position 6', "did you mean <break>?"]),
        ('<speak>A <prosdy rate="slow">b</prosdy></speak>', ["at position 9", "did you mean <prosody>?"]),
        ('Hello <break tme="1s"/> there', ["attribute 'tme'", 'time="1.5s"']),
        ('Hello <break time="soon"/> there', ["a time it cannot read"]),
        ('Hello <break strength="loud"/> there', ["strength it does not know", "x-strong"]),
    ],
)
def test_ssml_a_route_would_not_speak_as_written_is_named(text: str, named: list[str]) -> None:
    problem = ssml_problem(text)
    assert problem is not None and all(n in problem for n in named), problem


@pytest.mark.parametrize(
    "text",
    [
        '<speak>Hi <break time="3s"/> <break time="3000ms"/> there <break/></speak>',
        '<sub alias="a">b</sub> <say-as interpret-as="digits">12</say-as> <spell>ab</spell> <sub alias="x"/>',
        "<speak>Hello <emphasis>open emphasis and prosody <prosody rate='slow'>are harmless",
        "a < b and c > d <break/>",
        '<speak xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en">a <break time=".5s" strength="weak"/>'
        "<br/> <b>c</b> <breath/> <emphasis level='strong'>d</emphasis></speak>",
    ],
)
def test_ssml_spoken_as_written_has_no_problem(text: str) -> None:
    assert ssml_problem(text) is None


def test_a_near_miss_of_a_tag_makes_text_ssml_so_it_is_refused_not_spoken() -> None:
    from processing.ssml import looks_like_ssml

    assert looks_like_ssml('Hello <brake time="1s"/> world') and looks_like_ssml("Hello <brk/> world")
    for plain in ("a <br> b", "I <breath> and <laughs>", "x <excited> y", "a < b and c > d", "<html>"):
        assert not looks_like_ssml(plain), plain
