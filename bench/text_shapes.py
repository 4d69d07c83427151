"""Adversarial text shapes and the text steps a request reaches before it is charged: shared by
bench/bench_text_linearity.py and its unit test (tests/unit/processing/test_text_linearity.py).

A shape is a short unit repeated to any length: long runs of each markup character, an opener followed by text that
never closes it, nesting. A step that rescans the rest of a line from every opener costs n^2 on one of them.
"""

from __future__ import annotations

from collections.abc import Callable

from core.guards.text_budget import longest_spaced_word
from processing.chunking import split_text
from processing.markdown import drop_emoji, read_markdown
from processing.normalize import normalize_text
from processing.speech_document import read_document
from processing.tags import process_tags

MARKUP = "*_`#[]()!<>|~-+:\"'\\/.&;=^"

# name -> the unit repeated (a pair: the unit and a last piece that brings a markup character to the end)
UNITS: dict[str, str | tuple[str, str]] = {
    **{f"run {ch}": ch for ch in MARKUP},
    **{f"run {ch}a": f"{ch}a" for ch in MARKUP},
    **{f"run {ch}a space": f"{ch}a " for ch in MARKUP},
    "image opener ![": "![",
    "footnote [^": "[^",
    "link open [a](": "[a](",
    'link title [a](b "': '[a](b "',
    "code `a space": "`a ",
    "code ``a`": "``a`",
    "strong **a space": "**a ",
    "strong __a space": "__a ",
    "struck ~~a space": "~~a ",
    "emphasis *a space": "*a ",
    "reference [a][": "[a][",
    "autolink <a@b.": "<a@b.",
    "autolink <http://": "<http://a",
    "heading # then spaces": "# " + " " * 8,
    "spaces": " ",
    "spaces then --": (" ", "--x"),
    "spaces then #": (" ", "# x"),
    "table row then spaces": ("|--|--" + " " * 1000, "x"),
    "spaced pipes | |": "| ",
    "table cells |--": "|--",
    "table cells, not a separator": ("|--", "|-"),
    "rule - -": "- ",
    "ssml <break": "<break ",
    "tag [excited": "[excited",
    "voice marker [[": "[[a",
    "digits": "1",
    "dotted digits": "1.",
    "e-mail-like": "a@b.",
    "emoji joiners": "\U0001f600\u200d",
    "words": "lorem ipsum ",
}


def shape(unit: str | tuple[str, str], chars: int, *, line: bool = True) -> str:
    """`unit` repeated to about `chars` characters; `line`: one line (else lines of 80 characters)."""
    unit, last = unit if isinstance(unit, tuple) else (unit, "")
    text = unit * max(1, (chars - len(last)) // len(unit)) + last  # whole units: every size ends the same way
    if line:
        return text
    return "\n".join(text[i : i + 80] for i in range(0, len(text), 80))


def _plan(text: str) -> object:
    """What a plain text request runs before it is charged (services/pipeline/text_plan.py:plan_text)."""
    marked = read_markdown(drop_emoji(text))
    cleaned = normalize_text(process_tags(marked).text, markdown=False).text
    return split_text(" ".join(cleaned.split()) or "a", max_chars=250, threshold=300)


STEPS: dict[str, Callable[[str], object]] = {
    "drop_emoji": drop_emoji,
    "read_markdown": read_markdown,
    "process_tags": process_tags,
    "normalize_text": lambda text: normalize_text(text, markdown=False),
    "split_text": lambda text: split_text(text, max_chars=250, threshold=300),
    "read_document": lambda text: read_document(text),
    "read_document ssml": lambda text: read_document(f"<speak>{text}</speak>", ssml=True),
    "longest_spaced_word": longest_spaced_word,
    "plan (all steps)": _plan,
}
