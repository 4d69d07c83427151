"""SSML beyond breaks (`<sub>`, `<say-as>`, `<prosody>`, `<p>`/`<s>`), alias rules, and text planned with them."""

from __future__ import annotations

import pytest

from processing.lexicon import AliasRule, Lexicon
from processing.speech_document import read_document
from processing.ssml import (
    PARAGRAPH_S,
    SsmlParser,
    SsmlReader,
    looks_like_ssml,
    parse_ssml,
    prosody_rate,
    say_as,
    uniform_rate,
)
from services.errors import SynthesisError
from services.pipeline.markup import plan_document
from shared.settings import Settings


def test_sub_speaks_its_alias() -> None:
    assert parse_ssml('Visit <sub alias="World Wide Web">WWW</sub> today') == ["Visit World Wide Web today"]


def test_sub_without_alias_speaks_its_text() -> None:
    assert parse_ssml("a <sub>b</sub> c") == ["a b c"]


@pytest.mark.parametrize(
    ("kind", "text", "said"),
    [
        ("cardinal", "1,234", "one thousand two hundred thirty-four"),
        ("number", "-7", "minus seven"),
        ("ordinal", "3", "third"),
        ("ordinal", "21st", "twenty-first"),
        ("characters", "AB1", "A B one"),
        ("spell-out", "NASA", "N A S A"),
        ("digits", "2024", "two zero two four"),
        ("telephone", "555-0123", "five five five, zero one two three"),
        ("date", "2024-01-05", "2024-01-05"),  # the normaliser reads it
        ("unknown-kind", "12", "12"),
        ("cardinal", "twelve", "twelve"),  # not of the form: as written
    ],
)
def test_say_as(kind: str, text: str, said: str) -> None:
    assert say_as(kind, text) == said
    assert parse_ssml(f'<say-as interpret-as="{kind}">{text}</say-as>') == [said]


def test_paragraphs_and_sentences_pause_between_texts_only() -> None:
    assert parse_ssml("<speak><p>One.</p><p>Two.</p></speak>") == ["One.", PARAGRAPH_S, "Two."]
    assert parse_ssml("<speak><s>One.</s></speak>") == ["One."]


def test_unknown_tags_are_dropped_and_their_text_spoken() -> None:
    assert parse_ssml("<speak><emphasis>Hi</emphasis> <foo bar='1'>there</foo></speak>") == ["Hi there"]


def test_prosody_rate() -> None:
    assert prosody_rate("slow") == 0.75
    assert prosody_rate("150%") == 1.5
    assert prosody_rate("+20%") == pytest.approx(1.2)
    assert prosody_rate("-10%") == pytest.approx(0.9)
    assert prosody_rate("1.3") == 1.3
    assert prosody_rate("loud") is None
    assert uniform_rate('<speak><prosody rate="fast">All of it.</prosody></speak>') == 1.25
    assert uniform_rate('<prosody rate="fast">Some</prosody> of it.') is None  # not around all the text
    assert uniform_rate("No prosody.<break/>") is None


def test_reader_holds_a_say_as_across_pieces() -> None:
    reader = SsmlReader()
    out = reader.push('I am <say-as interpret-as="ordinal">2')
    out += reader.push("</say-as> in line")
    out += reader.flush()
    assert "".join(x for x in out if isinstance(x, str)) == "I am second in line"


def test_unclosed_say_as_is_spoken_as_written() -> None:
    parser = SsmlParser()
    assert parser.feed('<say-as interpret-as="cardinal">12') == []
    assert parser.finish() == ["12"]


def test_looks_like_ssml() -> None:
    assert looks_like_ssml("<speak>Hello</speak>")
    assert looks_like_ssml('Wait <break time="1s"/> then')
    assert not looks_like_ssml("a < b and b > c")
    assert not looks_like_ssml("<b>bold</b> is HTML")
    assert not looks_like_ssml("plain text")


def test_alias_rules_case_and_word_boundaries() -> None:
    rules = Lexicon(
        (
            AliasRule("nginx", "engine x", case_sensitive=False),
            AliasRule("cat", "dog"),
            AliasRule("ing", "ING", word_boundaries=False),
        )
    )
    assert rules.apply("NGINX and Nginx") == "engine x and engine x"
    assert rules.apply("cat, Cat, concat") == "dog, Cat, concat"  # case-sensitive, whole words by default
    assert rules.apply("singing") == "sINGING"


def test_longest_rule_wins_and_replacements_are_not_matched_again() -> None:
    rules = Lexicon(
        (AliasRule("York", "yorrk"), AliasRule("New York", "the big apple"), AliasRule("apple", "X"))
    )
    assert rules.apply("New York and York") == "the big apple and yorrk"


def test_plain_text_has_no_markup() -> None:
    assert read_document("Hello there.", None).plain
    assert read_document("Hello there.", Lexicon(())).plain


def test_ssml_plan_pauses_and_written_text() -> None:
    settings = Settings()
    text = (
        '<speak>I have <say-as interpret-as="cardinal">12</say-as> apples.<break time="1s"/>'
        ' Visit <sub alias="World Wide Web">WWW</sub> on nginx.</speak>'
    )
    lexicon = Lexicon((AliasRule("nginx", "engine x"),))
    plan = plan_document(read_document(text, lexicon), settings, normalize=True, chunking=True)
    assert plan.chunks == ["I have twelve apples.", "Visit World Wide Web on engine x."]
    assert plan.pauses == {1: 1.0}
    assert plan.text == "I have twelve apples. Visit World Wide Web on engine x."
    assert "<" not in (plan.written or "")


def test_alias_applies_before_numbers() -> None:
    text = "Room 3 runs nginx"
    plan = plan_document(
        read_document(text, Lexicon((AliasRule("Room 3", "the blue room"), AliasRule("nginx", "engine 2")))),
        Settings(),
        normalize=True,
        chunking=True,
    )
    assert plan.text == "the blue room runs engine two"


def test_breaks_over_the_request_budget_are_dropped() -> None:
    settings = Settings()
    text = "a" + '<break time="3s"/> word' * 40
    plan = plan_document(read_document(text, None), settings, normalize=True, chunking=True)
    assert sum(plan.pauses.values()) == pytest.approx(settings.limits.ssml_max_total_break_s)


def test_ssml_with_nothing_to_say_is_refused() -> None:
    text = '<speak><break time="1s"/></speak>'
    with pytest.raises(SynthesisError, match="nothing left to speak"):
        plan_document(read_document(text, None), Settings(), normalize=True, chunking=True)


def test_alias_rules_too_costly_for_an_ssml_run_are_refused_not_skipped() -> None:
    """Rules that overlap everywhere in one run of SSML text refuse the request (`param: lexicon`), as they do in
    plain text and on a socket; the run is not dropped as if it had nothing to say."""
    chain = Lexicon(tuple(AliasRule("a" * n, "b", word_boundaries=False) for n in range(1, 201)))
    text = f'<speak>Hello there.<break time="1s"/>{"a" * 10_000}</speak>'
    with pytest.raises(SynthesisError) as refused:
        plan_document(read_document(text, chain), Settings(), normalize=True, chunking=True)
    assert refused.value.code == "VALIDATION_ERROR" and refused.value.param == "lexicon"
