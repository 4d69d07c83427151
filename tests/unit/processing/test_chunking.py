"""Long-text chunking: where text is cut before synthesis, and what is never cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing.chunking import DEFAULT_MAX_CHARS, DEFAULT_THRESHOLD, split_text
from processing.normalize import normalize_text
from processing.tags import is_tag
from shared.settings import Settings

ENGLISH_LONG = (
    "Spark TTS turns text into speech one token at a time. The service streams audio while the model is "
    "still generating, so listeners hear the first words quickly. Long requests are split into chunks at "
    "sentence boundaries. Each chunk reuses the voice of the first one, so the speaker never changes. "
    "Chunks are joined with a short crossfade, which hides the seams. Operators can turn chunking off, "
    "but then very long texts may drift or stall. This paragraph exists to be long enough for the test. "
    "It has well over one hundred and fifty words in total once it is repeated twice over. "
) * 2
HINDI_LONG = (
    "आज मौसम बहुत सुहावना है और हल्की ठंडी हवा चल रही है। बच्चे पार्क में खेल रहे हैं और बड़े लोग टहल रहे हैं। "
    "शाम को हम सब मिलकर खाना बनाएँगे और फिर कहानियाँ सुनेंगे। मेरे दादाजी पुरानी बातें बताते हैं॥ "
    "कल सुबह हमें जल्दी उठना है क्योंकि हमें रेलगाड़ी पकड़नी है। यात्रा लंबी होगी पर मज़ेदार भी होगी। "
)


def _words(chunks: list[str]) -> list[str]:
    return " ".join(chunks).split()


def test_defaults_match_the_service_settings():
    defaults = Settings()
    assert DEFAULT_MAX_CHARS == defaults.text.chunk_target_chars == 170
    assert DEFAULT_THRESHOLD == defaults.text.chunking_threshold_chars == 220


def test_short_text_is_one_chunk_and_blank_text_none():
    text = "A short sentence. Another one."
    assert split_text(text) == [text]
    assert split_text("x" * 220) == ["x" * 220]
    assert split_text("") == []
    assert split_text("   \n ") == []
    assert split_text(" " * 500) == []


def test_long_english_text_is_split_at_sentences():
    assert len(ENGLISH_LONG) > 450 and len(ENGLISH_LONG.split()) > 150
    chunks = split_text(ENGLISH_LONG)
    assert len(chunks) >= 5
    assert all(0 < len(c) <= DEFAULT_MAX_CHARS for c in chunks)
    assert all(c.endswith(".") for c in chunks)  # every cut is at a sentence end
    assert _words(chunks) == ENGLISH_LONG.split()


def test_long_hindi_text_is_split_at_dandas():
    chunks = split_text(HINDI_LONG * 2)
    assert len(chunks) >= 4
    assert all(0 < len(c) <= DEFAULT_MAX_CHARS for c in chunks)
    assert all(c.endswith(("।", "॥")) for c in chunks)
    assert _words(chunks) == (HINDI_LONG * 2).split()


def test_long_normalised_text_with_numbers_splits_cleanly():
    raw = "On 15/03/2024 Dr. Rao paid ₹1,25,000 for 3 tickets. मेरे पास 20,000 रुपये हैं। " * 6
    text = normalize_text(raw).text
    chunks = split_text(text)
    assert len(chunks) > 2 and all(len(c) <= DEFAULT_MAX_CHARS for c in chunks)
    assert _words(chunks) == text.split()


def test_overlong_sentence_is_cut_at_clauses_then_words():
    clause = "this clause keeps going for quite a while"
    sentence = ", ".join([clause] * 8) + "."
    chunks = split_text(sentence, max_chars=100, threshold=120)
    assert len(chunks) > 1
    assert all(len(c) <= 100 for c in chunks)
    assert all(c.endswith((",", ".")) for c in chunks)  # cut only after commas
    no_punctuation = " ".join(["word"] * 100)
    chunks = split_text(no_punctuation, max_chars=50, threshold=60)
    assert all(len(c) <= 50 for c in chunks) and _words(chunks) == no_punctuation.split()


def test_a_word_longer_than_max_chars_is_cut_into_chunk_sized_slices():
    giant = "x" * 300
    text = "Before the giant. " + giant + " after the giant word, the text goes on for a bit more here."
    chunks = split_text(text, max_chars=60, threshold=80)
    assert max(len(c) for c in chunks) <= 60
    assert "".join(_words(chunks)) == "".join(text.split())  # every character, in order
    assert ["x" * 60] * 5 == [c for c in chunks if set(c) == {"x"}]


@pytest.mark.parametrize("text", ["a" * 25_000, "1," * 12_500, "https://example.com/" + "p/" * 5_000])
def test_unbreakable_text_never_makes_a_giant_chunk(text: str):
    chunks = split_text(text, max_chars=170, threshold=220)
    assert max(len(c) for c in chunks) <= 170 and "".join(chunks) == text


def test_tags_stay_whole_and_attached_to_the_following_text():
    text = (
        ("Filler words to push the length along nicely " * 3) + "[excited] We won! " + "More text here. " * 8
    )
    for max_chars in (40, 60, 90, 170):
        chunks = split_text(text, max_chars=max_chars, threshold=50)
        joined = " ".join(chunks)
        assert "[excited] We" in joined
        for c in chunks:
            assert not is_tag(c.split()[-1])  # a tag is never left dangling at a chunk's end
    trailing = "Some sentence here. " * 20 + "[sigh]"
    chunks = split_text(trailing)
    assert chunks[-1].endswith("here. [sigh]")


def test_other_full_stops():
    urdu = "یہ ایک جملہ ہے۔ " * 30
    chunks = split_text(urdu)
    assert len(chunks) > 1 and all(c.endswith("۔") for c in chunks)
    chinese = "今天天气很好，我们去公园散步。" * 30  # no spaces at all
    chunks = split_text(chinese)
    assert len(chunks) > 1 and all(len(c) <= DEFAULT_MAX_CHARS for c in chunks)
    assert all(c.endswith("。") for c in chunks)
    assert "".join(chunks) == chinese  # nothing lost, nothing added inside a chunk


# --- properties ---------------------------------------------------------------------------------

_WORD = st.one_of(
    st.sampled_from(
        [
            "the",
            "model",
            "speaks",
            "नमस्ते",
            "दुनिया",
            "है।",
            "हैं॥",
            "end.",
            "why?",
            "wow!",
            "so,",
            "and;",
            "-",
            "—",
            "[excited]",
            "[laughs]",
            "<calm>",
            "😀",
            "తెలుగు",
            "x" * 200,
            "y" * 60,
            "[1]",
            "3.14",
        ]
    ),  # fmt: skip
    st.text(alphabet="abcdeकखग.,!?", min_size=1, max_size=25),
)
_SPACE = st.sampled_from([" ", " ", " ", "  ", "\n", "\t", "\n\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_WORD, _SPACE), min_size=1, max_size=120), st.integers(20, 200))
def test_property_chunks_keep_every_word_in_order(parts: list[tuple[str, str]], max_chars: int):
    text = "".join(word + space for word, space in parts)
    chunks = split_text(text, max_chars=max_chars, threshold=max_chars + 30)
    if not text.strip():
        assert chunks == []
        return
    assert all(c.strip() for c in chunks)  # never an empty chunk
    if all(len(w) <= max_chars for w in text.split()):
        assert _words(chunks) == text.split()  # same words, same order, none cut
    assert "".join(_words(chunks)) == "".join(text.split())  # longer words are sliced, nothing lost
    if len(chunks) > 1:
        for c in chunks:
            words = c.split()
            # Over the limit only when the chunk is one unsplittable unit: a slice, or tags + a slice.
            if len(c) > max_chars:
                assert len([w for w in words if not is_tag(w)]) <= 1, c
            assert not is_tag(words[-1]) or c is chunks[-1]


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=0, max_size=600))
def test_property_arbitrary_unicode_never_loses_characters(text: str):
    chunks = split_text(text, max_chars=50, threshold=60)
    assert all(c.strip() for c in chunks)
    assert "".join("".join(chunks).split()) == "".join(text.split())


@pytest.mark.parametrize("bad", [0, -5])
def test_nonsense_max_chars_is_refused(bad: int):
    with pytest.raises(ValueError):
        split_text("x " * 300, max_chars=bad)
