"""Alias rules: written strings replaced by what the model is asked to say instead ("nginx" -> "engine x"), from
pronunciation dictionaries (services/pronunciation) and a request's own `lexicon`. Applied to the text before the
normaliser, so an alias may be anything the normaliser reads (numbers, symbols).

One pass over the text, leftmost match first; where several rules match at one place the longest string wins (on a
tie, the rule listed first). Replaced text is never matched again. As ElevenLabs documents, a rule is case-sensitive
and matches whole words only unless it says otherwise (`case_sensitive`, `word_boundaries`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

MAX_RULE_CHARS = 200  # a rule's string and its alias, each


@dataclass(frozen=True)
class AliasRule:
    text: str  # ElevenLabs' `string_to_replace`, PLS's `<grapheme>`
    alias: str
    case_sensitive: bool = True
    word_boundaries: bool = True


@dataclass(frozen=True)
class Lexicon:
    """Rules in the order given (dictionaries in the order of their locators, then the request's own)."""

    rules: tuple[AliasRule, ...]

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        ordered = sorted(
            enumerate(self.rules), key=lambda item: -len(item[1].text)
        )  # stable: ties keep order
        alternatives = []
        for index, rule in ordered:
            body = re.escape(rule.text)
            if not rule.case_sensitive:
                body = f"(?i:{body})"
            if rule.word_boundaries:
                body = rf"(?<!\w){body}(?!\w)"
            alternatives.append(f"(?P<r{index}>{body})")
        return re.compile("|".join(alternatives))

    def apply(self, text: str) -> str:
        if not self.rules:
            return text
        rules = self.rules

        def replace(match: re.Match[str]) -> str:
            assert match.lastgroup is not None
            return rules[int(match.lastgroup[1:])].alias

        return self._pattern.sub(replace, text)

    def __add__(self, other: Lexicon) -> Lexicon:
        return Lexicon(self.rules + other.rules)


@dataclass(frozen=True)
class DictionaryLocator:
    """A stored pronunciation dictionary a request names (ElevenLabs' `pronunciation_dictionary_locators`)."""

    dictionary_id: str
    version_id: str | None = None  # None: its latest version
