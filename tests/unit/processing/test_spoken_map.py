"""processing.spoken_map: each written token gets the spoken words normalisation made of it."""

from __future__ import annotations

from processing.normalize import normalize_text
from processing.spoken_map import spoken_map, spoken_words_of
from processing.tags import process_tags


def _groups(text: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    spoken = normalize_text(process_tags(text, unknown="strip").text).text
    result = spoken_map(text, spoken)
    assert result.written_words == text.split() or "".join(result.written_words) == "".join(text.split())
    assert result.spoken_words == spoken_words_of(spoken)
    return [(g.written, g.spoken) for g in result.groups]


def test_expanded_tokens_get_all_their_spoken_words() -> None:
    groups = dict(_groups("I paid $5 on 15/03/2024 at 3:30pm."))
    assert groups[("$5",)] == ("five", "dollars")
    assert groups[("15/03/2024",)] == ("March", "fifteenth,", "twenty", "twenty-four")
    assert groups[("I",)] == ("I",) and groups[("paid",)] == ("paid",)


def test_adjacent_expansions_split_per_token() -> None:
    groups = _groups("3 cats & 2 dogs")
    assert groups == [
        (("3",), ("three",)),
        (("cats",), ("cats",)),
        (("&",), ("and",)),
        (("2",), ("two",)),
        (("dogs",), ("dogs",)),
    ]


def test_tags_are_written_but_not_spoken() -> None:
    groups = _groups("[excited] Wow, 10 points!")
    assert groups[0] == (("[excited]",), ())
    assert (("10",), ("ten",)) in groups


def test_chinese_and_hindi_numbers() -> None:
    groups = _groups("我有2024个苹果。")
    assert (("2024",), ("二", "千", "零", "二", "十", "四")) in groups
    assert groups[0] == (("我",), ("我",))
    assert (("25",), ("पच्चीस",)) in _groups("मेरे पास 25 रुपये हैं।")


def test_identical_text_maps_one_to_one() -> None:
    text = "Nothing here changes at all."
    assert all(len(w) == len(s) == 1 for w, s in _groups(text))
