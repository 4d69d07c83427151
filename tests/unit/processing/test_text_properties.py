"""Property tests of the text functions that take user-shaped input: the streaming segmenter (text in any
pieces), short numeric dates against fractions, and the normaliser on text built from its own hard cases."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from processing.normalize import normalize_text
from processing.normalize_dates import MONTHS_EN, date_words, short_date_words
from processing.segmenter import TextSegmenter

_PIECES = st.lists(st.text(st.sampled_from(list("ab c.!?\n,…।。\"'3")), max_size=30), max_size=30)


@settings(max_examples=300, deadline=None)
@given(_PIECES, st.integers(20, 120))
def test_the_segmenter_keeps_every_character_in_order_whatever_the_pieces(
    pieces: list[str], target: int
) -> None:
    segmenter = TextSegmenter(threshold=target + 30, target=target)
    parts = [part for piece in pieces for part in segmenter.push(piece)] + segmenter.flush()
    assert all(part and part == part.strip() for part in parts)  # stripped, never blank
    assert "".join("".join(parts).split()) == "".join("".join(pieces).split())
    assert segmenter.pending == ""


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from(list("ab c.!? ")), max_size=200), st.integers(1, 40))
def test_the_segmenter_cuts_the_same_text_the_same_way_in_any_piece_size(text: str, size: int) -> None:
    """Fed whole or in pieces of `size`: the same words reach synthesis (cuts may differ only at the buffer ends)."""
    whole = TextSegmenter()
    pieces = TextSegmenter()
    once = whole.push(text) + whole.flush()
    split = [p for i in range(0, len(text), size) for p in pieces.push(text[i : i + size])] + pieces.flush()
    assert " ".join(once).split() == " ".join(split).split()


@given(st.integers(0, 99), st.integers(0, 99), st.booleans(), st.booleans())
def test_a_zero_padded_short_date_is_a_date_or_left_to_the_fraction(
    a: int, b: int, pad_a: bool, pad_b: bool
) -> None:
    first, second = (f"{a:02d}" if pad_a else str(a)), (f"{b:02d}" if pad_b else str(b))
    words = short_date_words(first, second, hindi=False)
    padded = (pad_a and a < 10) or (pad_b and b < 10)
    if not padded:
        assert words is None  # "3/4", "12/5": fractions
    elif (1 <= a <= 31 and 1 <= b <= 12) or (1 <= a <= 12 and 1 <= b <= 31):
        assert words is not None and words.split()[0] in MONTHS_EN
    else:
        assert words is None


@given(
    st.integers(-5, 40),
    st.integers(-2, 14),
    st.one_of(st.none(), st.integers(1000, 2999)),
    st.booleans(),
    st.sampled_from(["en", "hi"]),
)
def test_date_words_never_raise_and_name_a_month_only_for_a_date(
    day: int, month: int, year: int | None, day_first: bool, lang: str
) -> None:
    words = date_words(lang, day, month, year, day_first=day_first)
    assert (words is None) == (not (1 <= month <= 12 and 1 <= day <= 31))


_HARD = st.sampled_from(
    [
        "12/05",
        "1/2",
        "05/25",
        "15/03/2024",
        "$2.5 million",
        "10:30 am",
        "50%",
        "3rd",
        "No. 5",
        "Dr. Who",
        "e.g.",
        "1990s",
        "10-20",
        "#4",
        "5 km",
        "₹1,500",
        "007",
        "v2.1.3",
        "x@y.io",
        "[excited]",
        "**bold**",
        "मार्च 5",
        "3 बजे",
        "1,00,000",
        "2024-03-05",
        "12/5",
    ]
)
_GLUE = st.sampled_from([" ", ", ", ". ", " and ", "\n", "(", ")", " - "])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_HARD, _GLUE), min_size=1, max_size=12), st.sampled_from([None, "en", "hi"]))
@example(
    [("[excited]", "("), ("[excited]", ")")], None
)  # CI found it: the second tag is the first's link target
def test_normalising_hard_cases_in_any_order_never_raises_and_leaves_no_ascii_digit(
    parts: list[tuple[str, str]], language: str | None
) -> None:
    text = "".join(a + b for a, b in parts)
    result = normalize_text(text, language)
    # A tag right before "(" opens a Markdown link ("[excited](12/05)" reads as its text, "excited"): not a tag, and
    # what its parentheses hold is the link's target, another tag too ("[excited]([excited])" reads "excited").
    glues = [g for p, g in parts if p == "[excited]"]
    assert "[excited]" in result.text or not glues or "(" in glues
    assert not any(c.isascii() and c.isdigit() for c in result.text), (text, result.text)
    assert "/05" not in result.text and "fifths" not in result.text.replace("twelve fifths", "")
