"""Emotion tags: kept, rewritten from the legacy form, stripped or refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing.tags import KNOWN_TAGS, TAG_RE, UnknownTagError, is_tag, process_tags


def test_known_bracket_tag_is_kept_as_is():
    result = process_tags("[excited] We won the match!")
    assert result.text == "[excited] We won the match!"
    assert result.tags_found == ["excited"]
    assert result.unknown_removed == []


def test_legacy_angle_tags_become_brackets():
    result = process_tags("<excited> We won! <laughs> Really.")
    assert result.text == "[excited] We won! [laughs] Really."
    assert result.tags_found == ["excited", "laughs"]


def test_tag_names_are_case_insensitive_and_canonicalised():
    assert process_tags("[Excited] hi <CALM>").text == "[excited] hi [calm]"


def test_legacy_closing_tags_are_dropped():
    assert process_tags("<whisper>keep it down</whisper> please").text == "[whisper]keep it down please"


def test_unknown_bracket_words_are_read_and_unknown_angle_tags_dropped_by_default():
    result = process_tags("Hello [dancing] world <robotic> again [foo_bar]")
    assert result.text == "Hello dancing world again foo bar"
    assert result.unknown_removed == ["dancing", "robotic", "foo_bar"]
    assert process_tags("<nonsense> start").text == "start"
    assert (
        process_tags("Press [Enter] to continue. See [Note] below.").text
        == "Press Enter to continue. See Note below."
    )
    assert process_tags("[laughs] Press [Enter]").text == "[laughs] Press Enter"


def test_unknown_tags_are_refused_in_reject_mode():
    with pytest.raises(UnknownTagError) as info:
        process_tags("Hello [dancing] world", unknown="reject")
    assert info.value.tag == "dancing"
    assert "excited" in str(info.value)  # the message lists what is accepted
    assert isinstance(info.value, ValueError)
    assert process_tags("[sigh] fine", unknown="reject").text == "[sigh] fine"


def test_invalid_mode_is_refused():
    with pytest.raises(ValueError):
        process_tags("x", unknown="keep")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "See note [1] and [2a].",
        "Quoted [see above] here.",
        "Math: a < b and c > d.",
        "I <3 you",
        "x<y>z is too short to be a tag",
        "[a] single letters are not tags",
        "email <me@example.com>",
        "[ excited ] has spaces",
        "[very_long_name_that_is_more_than_32_chars] stays",
        "हिंदी [खुश] टैग",
    ],
)
def test_other_brackets_are_left_alone(text: str):
    result = process_tags(text, unknown="reject")
    assert result.text == text
    assert result.tags_found == [] and result.unknown_removed == []


def test_known_tags_are_documented_and_tag_shaped():
    for name in ("laugh", "laughs", "sigh", "excited", "calm", "angry", "sad", "happy", "whisper", "cough",
                 "giggle", "curious", "surprised"):  # fmt: skip
        assert name in KNOWN_TAGS
    for name in KNOWN_TAGS:
        assert is_tag(f"[{name}]") and is_tag(f"<{name}>")
        assert name == name.lower()


def test_text_without_tags_is_returned_untouched():
    text = "  plain   text, with   odd spacing  "
    assert process_tags(text).text == text


_WORDS = st.sampled_from(
    ["hello", "नमस्ते", "world", "[excited]", "<calm>", "[dancing]", "<robot>", "[1]", "a<b", "😀"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS, max_size=20))
def test_property_strip_mode_leaves_only_known_bracket_tags(words: list[str]):
    text = " ".join(words)
    result = process_tags(text)
    for m in TAG_RE.finditer(result.text):
        assert m.group(1) in KNOWN_TAGS  # every surviving tag is a known [name]
    assert result.text.count("[excited]") == words.count("[excited]")
    assert result.text.count("[calm]") == words.count("<calm>")
    # Plain words stay; an unknown bracketed word is read as the word; tags (known, or unknown <angle>) are not words.
    plain = [
        w if not is_tag(w) else w[1:-1]
        for w in words
        if not is_tag(w) or (w.startswith("[") and w[1:-1] not in KNOWN_TAGS)
    ]
    assert re.sub(r"\[(excited|calm)\]", " ", result.text).split() == plain
    assert process_tags(result.text).text == result.text
