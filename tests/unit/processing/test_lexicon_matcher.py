"""The alias-rule matcher (processing/lexicon.py): the same answers as a regex alternation of the rules (the
reference below, on small random cases), linear in the text however many rules, compiled once per rule set, and
refused in the error envelope where rules are built to overlap everywhere."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from processing.lexicon import (
    MAX_RULE_CHARS,
    PAUSE_EVERY_CANDIDATES,
    AliasRule,
    AliasRulesTooCostly,
    Lexicon,
    compiled,
)
from services.errors import SynthesisError
from services.pipeline.text_plan import plan_text


def _reference(rules: tuple[AliasRule, ...], text: str) -> str:
    """The semantics as a regex alternation: longest string first, ties in order (small inputs only)."""
    ordered = sorted(enumerate(rules), key=lambda item: -len(item[1].text))
    alternatives = []
    for index, rule in ordered:
        body = re.escape(rule.text)
        body = body if rule.case_sensitive else f"(?i:{body})"
        body = rf"(?<!\w){body}(?!\w)" if rule.word_boundaries else body
        alternatives.append(f"(?P<r{index}>{body})")
    pattern = re.compile("|".join(alternatives))
    return pattern.sub(lambda m: rules[int(str(m.lastgroup)[1:])].alias, text)


@pytest.mark.parametrize("alphabet", ["aAbB _.-1é", "İiIı _a", "ΣσςϐβµμſsS _", "ǅǆǄKkK1_ "])
def test_same_answers_as_a_regex_alternation(alphabet: str) -> None:
    rng = random.Random(alphabet)
    for _ in range(600):
        rules = tuple(
            AliasRule(
                "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))),
                f"<{i}>",
                rng.random() < 0.5,
                rng.random() < 0.5,
            )
            for i in range(rng.randint(1, 8))
        )
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        split = rng.randint(0, len(rules))
        joined = Lexicon(rules[:split]) + Lexicon(rules[split:])  # sets compiled apart, ranked together
        expected = _reference(rules, text)
        assert Lexicon(rules).apply(text) == expected, (rules, text)
        assert joined.apply(text) == expected, (rules, text)


def test_documented_rules() -> None:
    lexicon = Lexicon(
        (
            AliasRule("nginx", "engine x"),
            AliasRule("UN", "United Nations"),
            AliasRule("New York", "NYC", case_sensitive=False),
            AliasRule("New", "Old"),
            AliasRule("ing", "ING", word_boundaries=False),
        )
    )
    assert lexicon.apply("nginx, NGINX, nginxes") == "engine x, NGINX, nginxes"  # case, whole words
    assert lexicon.apply("the UN; un") == "the United Nations; un"
    assert lexicon.apply("new york and New") == "NYC and Old"  # longest first; replaced text never again
    assert lexicon.apply("singing") == "sINGING"  # inside words when a rule says so


def test_three_full_dictionaries_on_ten_thousand_characters() -> None:
    """The alias-rule attack (3 x 1,000 rules of 200 characters; 54 s under a regex), with a right answer."""
    rng = random.Random(71)

    def rule(d: int, i: int) -> AliasRule:
        words = f"d{d}r{i} " + " ".join(
            "".join(rng.choice("abcdefgh") for _ in range(7)) for _ in range(MAX_RULE_CHARS // 8)
        )
        return AliasRule(words[:MAX_RULE_CHARS].rstrip(), f"alias {d} {i}")

    sets = [tuple(rule(d, i) for i in range(1000)) for d in range(3)]
    lexicon = Lexicon(sets[0]) + Lexicon(sets[1]) + Lexicon(sets[2])
    filler = " ".join(f"w{n}" for n in range(3000))
    hits = [sets[0][5], sets[2][999], sets[1][0]]
    body = " ".join([hits[0].text, filler[:2500], hits[1].text, filler[:2500], hits[2].text]) + "."
    text = filler[: 10_000 - len(body) - 1] + " " + body
    assert len(text) == 10_000
    result = lexicon.apply(text)
    assert "alias 0 5" in result and "alias 2 999" in result and "alias 1 0." in result
    assert result.count("alias") == 3 and lexicon.apply(text) == result  # again, from the compiled cache
    assert all(compiled(rules) is compiled(rules) for rules in sets)


def test_a_rule_set_compiles_once() -> None:
    rules = tuple(AliasRule(f"word{i}", f"alias{i}") for i in range(50))
    first = compiled(rules)
    assert Lexicon(rules).apply("word7 and word42") == "alias7 and alias42"
    assert compiled(tuple(rules)) is first  # equal rules, another tuple: the same automata


def test_rules_that_overlap_everywhere_are_refused() -> None:
    """200 rules each a suffix of the next match 200 times at every place: refused, not ground through."""
    chain = Lexicon(
        tuple(AliasRule("a" * n, "b", word_boundaries=False) for n in range(1, MAX_RULE_CHARS + 1))
    )
    with pytest.raises(AliasRulesTooCostly, match="overlap too much"):
        chain.apply("a" * 10_000)
    assert chain.apply("a" * 20) == "b"  # a short text stays within the bound
    with pytest.raises(SynthesisError) as refused:
        plan_text("a" * 10_000, normalize=True, chunking=True, threshold=150, target=100, lexicon=chain)
    assert refused.value.code == "VALIDATION_ERROR" and refused.value.param == "lexicon"


def test_on_a_socket_the_bound_is_an_error_not_silence(demo_model_dir: Path) -> None:
    """A socket utterance's text over the bound is refused in the envelope (`param: lexicon`), not skipped as a part
    with nothing to speak."""
    from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisRequest
    from services.sessions.utterance import Utterance
    from tests.demo_runtime import demo_runtime

    chain = Lexicon(
        tuple(AliasRule("a" * n, "b", word_boundaries=False) for n in range(1, MAX_RULE_CHARS + 1))
    )
    with demo_runtime(demo_model_dir) as runtime:
        request = SynthesisRequest(
            request_id="u-lexicon",
            text="",
            voice=runtime.voices.resolve("fixed"),
            sampling=SamplingOptions(0.8, 50, 1.0, 4096, 1.05, seed=1),
            sample_rate=NATIVE_RATE,
            stream=True,
            lexicon=chain,
        )
        u = Utterance(runtime.pipeline_resources(), request, max_text_chars=50_000)
        with pytest.raises(SynthesisError) as refused:
            u.add_text("a" * 5_000 + ".")
            u.flush()
        assert refused.value.param == "lexicon"


def test_case_variants_of_one_word_fold_to_one_rule() -> None:
    """The rule-folding attack (issue 98): three sets of 1,000 capitalisations of one 200-letter word behind one
    key each. Each set keeps only the rules that can win (the first with each kind of word boundary), so a match
    costs a bounded step and the candidate budget counts what is done."""
    word = "a" * MAX_RULE_CHARS

    def variant(i: int) -> str:
        return "".join(ch.upper() if i >> (n % 10) & 1 else ch for n, ch in enumerate(word))

    sets = [
        tuple(AliasRule(variant(i), f"alias {d} {i}", case_sensitive=False) for i in range(1000))
        for d in range(3)
    ]
    for rules in sets:
        automaton = compiled(rules).folded
        assert automaton is not None
        _, entries = automaton.get(word)
        assert [index for index, _ in entries] == [0]
    lexicon = Lexicon(sets[0]) + Lexicon(sets[1]) + Lexicon(sets[2])
    assert lexicon.apply("a" * 10_000) == "a" * 10_000  # no place is a whole word: nothing replaced
    assert lexicon.apply(f"say {word.upper()} now") == "say alias 0 0 now"  # the first rule listed wins
    mixed = tuple(
        AliasRule(text, alias, case_sensitive=False, word_boundaries=bounded)
        for text, alias, bounded in (
            ("ab", "bounded", True),
            ("AB", "shadowed", True),
            ("Ab", "anywhere", False),
        )
    )
    folded = compiled(mixed).folded
    assert folded is not None and [i for i, _ in folded.get("ab")[1]] == [0, 2]
    assert Lexicon(mixed).apply("ab xab") == "bounded xanywhere"


def test_the_folding_attack_pauses_between_stretches_of_candidates() -> None:
    """The rule-folding attack's 10,000 letters find about 30,000 candidates in one call: `apply` calls its pause
    (a text step's turn between keys, services/device/key_share.py `TextTurns`) every `PAUSE_EVERY_CANDIDATES`, and
    answers as it does without one."""
    word = "a" * MAX_RULE_CHARS
    sets = [
        tuple(
            AliasRule(
                "".join(ch.upper() if i >> (n % 10) & 1 else ch for n, ch in enumerate(word)), "b", False
            )
            for i in range(1000)
        )
        for _ in range(3)
    ]
    lexicon = Lexicon(sets[0]) + Lexicon(sets[1]) + Lexicon(sets[2])
    pauses: list[int] = []
    text = "a" * 10_000
    assert lexicon.apply(text, lambda: pauses.append(1)) == lexicon.apply(text)
    candidates = 3 * (len(text) - MAX_RULE_CHARS + 1)
    assert len(pauses) == candidates // PAUSE_EVERY_CANDIDATES
