"""Alias rules: written strings replaced by what the model is asked to say instead ("nginx" -> "engine x"), from
pronunciation dictionaries (services/pronunciation) and a request's own `lexicon`. Applied to the text before the
normaliser, so an alias may be anything the normaliser reads (numbers, symbols).

One pass over the text, leftmost match first; where several rules match at one place the longest string wins (on a
tie, the rule listed first). Replaced text is never matched again. As ElevenLabs documents, a rule is case-sensitive
and matches whole words only unless it says otherwise (`case_sensitive`, `word_boundaries`); a word character is
what `re` calls one (a letter, a digit, `_`), and case is folded one character at a time.

Each rule set (a stored dictionary's version, a request's own rules) is compiled once into Aho-Corasick automata
(pyahocorasick) and kept in a small cache keyed by its rules, so matching costs time linear in the text plus the
candidate matches it finds, and the candidates are capped per character: rules built to overlap everywhere are
refused (`AliasRulesTooCostly`), never left to hold the interpreter (a regex alternation of thousands of rules held
the GIL for tens of seconds). Rules that share a key (case variants of one word in a case-insensitive set, repeats)
are folded when the set is compiled to the at most two that can ever win, so each candidate costs a bounded step.
`apply` calls its `pause` every `PAUSE_EVERY_CANDIDATES` candidates: a text step's turn between keys
(services/device/key_share.py `TextTurns`), so long matching never holds the CPU in one stretch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import ahocorasick

MAX_RULE_CHARS = 200  # a rule's string and its alias, each
# Candidate matches a text may yield per character (all rule sets together) before it is refused: ordinary
# dictionaries find well under one; only rules that are suffixes of one another pile up (at most 200 per place).
MAX_CANDIDATES_PER_CHAR = 8
MIN_CANDIDATE_BUDGET = 4096  # so a short text with a few overlapping rules is never refused
PAUSE_EVERY_CANDIDATES = 2048  # candidates between two calls of `apply`'s pause (a few milliseconds)
COMPILED_SETS = 16  # rule sets kept compiled (a full 1,000-rule dictionary of 200 characters is about 10 MB)


class AliasRulesTooCostly(ValueError):
    """The rules match the text at too many overlapping places to apply within the per-request bound."""


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
    # How many rules each joined set brought (`+`); each set is compiled and cached on its own, so a dictionary
    # version compiles once whatever it is combined with. Empty: the rules are one set.
    sizes: tuple[int, ...] = ()

    @cached_property
    def _sets(self) -> tuple[tuple[int, tuple[AliasRule, ...]], ...]:
        """(index of the set's first rule, its rules) for each set."""
        sets, start = [], 0
        for size in self.sizes or (len(self.rules),):
            sets.append((start, self.rules[start : start + size]))
            start += size
        return tuple(sets)

    def apply(self, text: str, pause: Callable[[], None] = lambda: None) -> str:
        """`text` with the rules applied (AliasRulesTooCostly: the rules overlap too much in it); `pause` is called
        every `PAUSE_EVERY_CANDIDATES` candidate matches."""
        if not self.rules or not text:
            return text
        found = _Candidates(text, pause)
        for offset, rules in self._sets:
            compiled(rules).collect(found, offset)
        return found.substituted()

    def __add__(self, other: Lexicon) -> Lexicon:
        return Lexicon(self.rules + other.rules, _sizes(self) + _sizes(other))


def _sizes(lexicon: Lexicon) -> tuple[int, ...]:
    return lexicon.sizes or ((len(lexicon.rules),) if lexicon.rules else ())


# Letters `re` also takes as the same letter ignoring case (its own table, Python 3.11): each folds to the first.
_SAME_LETTERS = (
    "iı",
    "sſ",
    "µμ",
    "\u0345ι\u1fbe",
    "\u0390\u1fd3",
    "\u03b0\u1fe3",
    "βϐ",
    "εϵ",
    "θϑ",
    "κϰ",
    "πϖ",
    "ρϱ",
    "σς",
    "φϕ",
    "в\u1c80",
    "д\u1c81",
    "о\u1c82",
    "с\u1c83",
    "т\u1c84\u1c85",
    "ъ\u1c86",
    "ѣ\u1c87",
    "\u1c88\ua64b",
    "\u1e61\u1e9b",
    "\ufb05\ufb06",
)
_FOLD = {ord(ch): letters[0] for letters in _SAME_LETTERS for ch in letters[1:]}


def fold(text: str) -> str:
    """Case folded as `re` compares letters ignoring case, one character for one, so positions stay the same."""
    # "İ" is the one letter whose lower case is longer ("i" and a dot); `re` takes it as "i".
    return text.replace("İ", "i").lower().translate(_FOLD)


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"  # `re`'s \w


class _Candidates:
    """The best rule starting at each place in one text, gathered from every rule set within a budget."""

    def __init__(self, text: str, pause: Callable[[], None] = lambda: None) -> None:
        self.text = text
        self.pause = pause
        self.spent = 0  # candidates so far
        self._folded: str | None = None
        self.budget = max(MAX_CANDIDATES_PER_CHAR * len(text), MIN_CANDIDATE_BUDGET)
        self.best: dict[int, tuple[int, int, str]] = {}  # start -> (length, -rule index, alias)

    @property
    def folded(self) -> str:
        if self._folded is None:
            self._folded = fold(self.text)
        return self._folded

    def add(self, start: int, length: int, entries: tuple[tuple[int, AliasRule], ...], offset: int) -> None:
        text = self.text
        for (
            index,
            rule,
        ) in entries:  # one string, rules in their order (at most two): the first that fits here wins
            if rule.word_boundaries and (
                (start > 0 and _is_word(text[start - 1]))
                or (start + length < len(text) and _is_word(text[start + length]))
            ):
                continue
            rank = (length, -(offset + index), rule.alias)
            held = self.best.get(start)
            if held is None or rank[:2] > held[:2]:
                self.best[start] = rank
            return

    def spend(self) -> None:
        self.budget -= 1
        self.spent += 1
        if self.spent % PAUSE_EVERY_CANDIDATES == 0:
            self.pause()
        if self.budget < 0:
            raise AliasRulesTooCostly(
                "the alias rules overlap too much in this text "
                f"(more than {MAX_CANDIDATES_PER_CHAR} candidate matches per character); use fewer rules that "
                "are suffixes of one another"
            )

    def substituted(self) -> str:
        text, position = self.text, 0
        out: list[str] = []
        for start in sorted(self.best):
            if start < position:
                continue  # inside a replaced match: replaced text is never matched again
            length, _, alias = self.best[start]
            out += (text[position:start], alias)
            position = start + length
        out.append(text[position:])
        return "".join(out)


Entries = tuple[tuple[int, AliasRule], ...]


def _automaton(keyed: Iterable[tuple[str, int, AliasRule]]) -> ahocorasick.Automaton | None:
    """The rules' strings in one automaton; the rules behind one key folded to the (at most two) that can win."""
    by_key: dict[str, list[tuple[int, AliasRule]]] = {}
    for key, index, rule in keyed:
        if not key:  # an empty string matches nowhere
            continue
        entries = by_key.setdefault(key, [])
        # Where a key matches, the first of its rules that fits the place wins, and whether one fits depends only on
        # its word boundaries: a rule after one that fits everywhere, or after one with the same boundaries, never
        # wins. So at most two rules stay behind a key, whatever case variants a rule set holds (1,000 spellings of
        # one word once cost 1,000 steps per match while the candidate budget counted one).
        if any(
            not held.word_boundaries or held.word_boundaries == rule.word_boundaries for _, held in entries
        ):
            continue
        entries.append((index, rule))
    if not by_key:
        return None
    automaton = ahocorasick.Automaton()
    for key, entries in by_key.items():
        automaton.add_word(key, (len(key), tuple(entries)))
    automaton.make_automaton()
    return automaton


class CompiledRules:
    """One rule set: an automaton of the case-sensitive rules' strings and one of the others' folded strings."""

    def __init__(self, rules: tuple[AliasRule, ...]) -> None:
        indexed = list(enumerate(rules))
        self.exact = _automaton((rule.text, i, rule) for i, rule in indexed if rule.case_sensitive)
        self.folded = _automaton((fold(rule.text), i, rule) for i, rule in indexed if not rule.case_sensitive)

    def collect(self, found: _Candidates, offset: int) -> None:
        for automaton, folded in ((self.exact, False), (self.folded, True)):
            if automaton is None:
                continue
            entries: Entries
            for end, (length, entries) in automaton.iter(found.folded if folded else found.text):
                found.spend()
                found.add(end - length + 1, length, entries, offset)


@lru_cache(maxsize=COMPILED_SETS)
def compiled(rules: tuple[AliasRule, ...]) -> CompiledRules:
    """A rule set's automata, built once per set (a dictionary's version) while it stays in use."""
    return CompiledRules(rules)


@dataclass(frozen=True)
class DictionaryLocator:
    """A stored pronunciation dictionary a request names (ElevenLabs' `pronunciation_dictionary_locators`)."""

    dictionary_id: str
    version_id: str | None = None  # None: its latest version
