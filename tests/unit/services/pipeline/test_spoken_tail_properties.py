"""Property tests of the continuity tail cutter (services/pipeline/spoken_tail.py): whatever the chunks and the bound,
it never raises, keeps at most the bound, keeps the end of the speech, and its text is the end of the words."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.pipeline.spoken_tail import TailSegment, cut_segment, tail_of

_TEXT = st.text(st.sampled_from(list("ab .,你好 \u00e9\u0915")), max_size=60)
_SEGMENT = st.builds(TailSegment, _TEXT, st.lists(st.integers(0, 8191), max_size=400).map(tuple))


def test_a_room_smaller_than_one_characters_share_is_nothing_not_an_error() -> None:
    """195 ids for a long text and a room of 150 ids left a start index past the text's end."""
    long = TailSegment("x" * 2000, (5,) * 195)
    assert cut_segment(long, 150) is None or len(cut_segment(long, 150).semantic) <= 150
    assert cut_segment(TailSegment("y" * 400, (1,) * 195), 0) is None
    assert cut_segment(TailSegment("z" * 400, (1,) * 500), 1) is None  # 400 * 1 // 500 == 0 characters kept
    tail = tail_of([TailSegment("Hi.", (1,) * 50), TailSegment("w" * 500, (2,) * 195)], 200)
    assert tail is None or len(tail.semantic) <= 200


@settings(max_examples=300, deadline=None)
@given(_SEGMENT, st.integers(-5, 500))
@example(TailSegment("a" * 300, (1,) * 195), 150)
def test_cut_segment_keeps_at_most_the_room_from_the_end(segment: TailSegment, room: int) -> None:
    part = cut_segment(segment, room)
    if part is None:
        return
    assert 0 < len(part.semantic) <= max(room, 0)
    assert segment.semantic[len(segment.semantic) - len(part.semantic) :] == part.semantic
    assert part.text and part.text == part.text.strip() and segment.text.strip().endswith(part.text)


@settings(max_examples=300, deadline=None)
@given(st.lists(_SEGMENT, max_size=6), st.integers(0, 400))
def test_tail_of_is_bounded_and_the_end_of_the_speech(segments: list[TailSegment], bound: int) -> None:
    tail = tail_of(segments, bound)
    if tail is None:
        return
    everything = tuple(s for segment in segments for s in segment.semantic)
    assert 0 < len(tail.semantic) <= bound
    assert everything[len(everything) - len(tail.semantic) :] == tail.semantic
    assert tail.text.strip()
    last_spoken = [s for s in segments if s.text.strip() and s.semantic][-1]
    assert tail.text.endswith(last_spoken.text.strip().split()[-1][-1])


@settings(max_examples=200, deadline=None)
@given(st.lists(_SEGMENT.filter(lambda s: bool(s.text.strip() and s.semantic)), min_size=1, max_size=5))
def test_everything_within_the_bound_is_kept_whole(segments: list[TailSegment]) -> None:
    total = sum(len(s.semantic) for s in segments)
    tail = tail_of(segments, total)
    assert tail is not None and tail.semantic == tuple(s for segment in segments for s in segment.semantic)
