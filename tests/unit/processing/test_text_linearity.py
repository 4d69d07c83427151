"""Every text step a request reaches before it is charged grows linearly on adversarial shapes (issue 98: a line of
40,000 `![` held the interpreter for 51 s in the Markdown reader). The check is generous (a quadratic step grows
8x per character from 4,000 to 32,000 characters, a linear one 1x; the bound is 3x) and timed in CPU time, so other
load on the machine does not move it; bench/bench_text_linearity.py runs every shape on every step."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bench.text_shapes import STEPS, UNITS, shape
from processing.markdown import read_markdown

SMALL, FACTOR, BOUND = 4_000, 8, 3.0
ATTACKS = (  # the lines, and the shapes the fuzz benchmark found superlinear before the fix
    "image opener ![",
    "footnote [^",
    "code `a space",
    "strong **a space",
    "struck ~~a space",
    "spaces then --",
    "heading # then spaces",
    "table row then spaces",
)


def _cpu(step: Callable[[str], object], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        try:
            step(text)
        except ValueError:
            pass
        best = min(best, time.process_time() - started)
    return max(best, 1e-4)  # a clock tick: a step too fast to time cannot be called superlinear


@pytest.mark.parametrize("step", ["read_markdown", "plan (all steps)"])
@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("line", [True, False], ids=["one line", "lines"])
def test_text_steps_grow_linearly(step: str, name: str, line: bool) -> None:
    run = STEPS[step]
    small = _cpu(run, shape(UNITS[name], SMALL, line=line))
    large = _cpu(run, shape(UNITS[name], SMALL * FACTOR, line=line))
    assert large / small / FACTOR < BOUND, f"{step} on {name!r}: {small * 1e3:.1f} ms -> {large * 1e3:.1f} ms"


def test_the_attack_lines_still_read_as_markdown() -> None:
    """The bounded patterns still read what LLMs write."""
    assert read_markdown("See ![a cat](cat.png) and [the docs](https://x.y/z).") == "See a cat and the docs."
    assert read_markdown("Run `ls -l` or ``a `b` c`` now") == "Run ls -l or a `b` c now"
    assert read_markdown("**bold** and ~~gone~~ and __this__") == "bold and gone and this"
    assert read_markdown("## Title ##") == "Title."
    assert read_markdown("| a | b |\n|---|---|\n| 1 | 2 |") == "a, b.\n\n1, 2."
    assert read_markdown("`a " * 5) == "`a " * 5  # never closed: left as written
