"""Property tests for the aligner's placement: any audio (noise, silence, clicks, gated tones, even
non-finite samples) and any words (none, one, punctuation only, hundreds) give every word a span, in order, monotonic
and inside the audio; never an exception. The same for the incremental estimate fed in pieces of any size, and for
`_place`, the step that once raised an IndexError on a rounding overshoot."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.align import align, split_words
from core.align.estimate import FRAME_S, _place
from core.align.incremental import IncrementalEstimate, spread

RATE = 16_000
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def audio(draw: st.DrawFn) -> np.ndarray:
    """Noise, silence, clicks, or a tone gated on and off on the 20 ms grid; sometimes a non-finite sample."""
    seconds = draw(st.floats(0.0, 3.0))
    n = int(seconds * RATE)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["noise", "silence", "clicks", "gated"]))
    if kind == "noise":
        out = rng.normal(0.0, draw(st.sampled_from([1e-7, 1e-3, 0.1, 1.0])), n)
    elif kind == "silence":
        out = np.zeros(n)
    elif kind == "clicks":
        out = np.zeros(n)
        if n:
            out[rng.integers(0, n, size=draw(st.integers(0, 30)))] = rng.choice([-1.0, 1.0])
    else:
        t = np.arange(n) / RATE
        gate = rng.random(n // 320 + 1) < draw(st.floats(0.0, 1.0))
        out = 0.3 * np.sin(2 * np.pi * draw(st.floats(50, 4000)) * t) * gate[np.arange(n) // 320]
    out = out.astype(np.float32)
    if n and draw(st.booleans()) and draw(st.booleans()):
        out[rng.integers(0, n)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return out


word = st.one_of(
    st.from_regex(r"[A-Za-z]{1,12}[.,!?]?", fullmatch=True),
    st.sampled_from(["$5", "15/03/2024", "...", "—", "!!", "[excited]", "你", "好，", "नमस्ते", "12345", "'"]),
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=6),
)
words = st.one_of(st.lists(word, max_size=3), st.lists(word, min_size=50, max_size=300))


def check(spans: list, expected: list[str], duration: float) -> None:
    assert [s.text for s in spans] == expected
    floor = 0.0
    for span in spans:
        assert np.isfinite(span.start) and np.isfinite(span.end)
        assert floor - 1e-9 <= span.start <= span.end <= duration + 1e-9, (span, floor, duration)
        floor = span.end


@PROPERTY
@given(audio(), words)
@example(np.zeros(8574, np.float32), [f"w{i}" for i in range(27)])
def test_estimate_places_every_word_inside_the_audio(samples: np.ndarray, text: list[str]) -> None:
    expected = [w for w in text if w.strip()]
    result = align(samples, text)
    check(list(result.words), expected, len(samples) / RATE)


@PROPERTY
@given(audio(), words, st.lists(st.integers(160, 20_000), min_size=1, max_size=8), st.floats(0.5, 12.0))
def test_incremental_estimate_settles_once_in_order(
    samples: np.ndarray, text: list[str], pieces: list[int], rate: float
) -> None:
    expected = [w for w in text if w.strip()]
    inc = IncrementalEstimate(text, rate=rate)
    spans, at, i = [], 0, 0
    while at < len(samples):
        size = pieces[i % len(pieces)]
        spans += inc.feed(samples[at : at + size])
        at += size
        i += 1
        assert len(spans) == inc.placed and inc.placed < max(
            1, len(expected)
        )  # the last word waits for the end
    spans += inc.finish()
    check(spans, expected, len(samples) / RATE)
    assert inc.finish() == []  # nothing twice


@PROPERTY
@given(
    st.lists(st.floats(0.01, 20.0), min_size=1, max_size=40),
    st.lists(st.integers(0, 5000), max_size=300, unique=True),
)
def test_place_shares_the_frames_it_is_given(units: list[float], frames: list[int]) -> None:
    frames_arr = np.array(sorted(frames), np.int64)
    names = [f"w{i}" for i in range(len(units))]
    spans = _place(names, np.array(units), frames_arr, at=7)
    assert [s.text for s in spans] == names
    low = frames_arr[0] * FRAME_S if len(frames_arr) else 7 * FRAME_S
    high = (frames_arr[-1] + 1) * FRAME_S if len(frames_arr) else 7 * FRAME_S
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.end <= b.start + 1e-9
    assert all(low - 1e-9 <= s.start <= s.end <= high + 1e-9 for s in spans)


@PROPERTY
@given(st.text(max_size=200), st.floats(0.0, 100.0), st.floats(0.0, 100.0))
def test_spread_never_fails(text: str, start: float, end: float) -> None:
    items = split_words(text)
    spans = spread(items, start, end)
    assert [s.text for s in spans] == items
    assert all(start - 1e-3 <= s.start <= s.end <= max(start, end) + 1e-9 for s in spans)  # ms resolution
