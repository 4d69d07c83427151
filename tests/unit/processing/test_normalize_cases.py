"""The normalisation case table (tests/unit/normalize_cases.py): Chinese, English, Hindi and mixed sentences."""

from __future__ import annotations

import re

import pytest

from processing.normalize import normalize_text
from services.pipeline.text_plan import plan_text
from tests.unit.normalize_cases import ALL, EN, HI, LLM, MIXED, ZH

# Left in a normalised text, these would be read out as symbols or in the wrong language.
STRAY = re.compile(r"[0-9%$€£₹¥￥=/@#&+]")


def test_the_table_covers_every_language_with_150_cases() -> None:
    assert len(ALL) >= 150 and min(len(ZH), len(EN), len(HI), len(MIXED)) >= 20
    assert len({case_id for case_id, _, _ in ALL}) == len(ALL)


@pytest.mark.parametrize(("case_id", "text", "accepted"), ALL, ids=[case[0] for case in ALL])
def test_case(case_id: str, text: str, accepted: tuple[str, ...]) -> None:
    out = normalize_text(text).text
    assert out in accepted, f"{case_id}: {text!r} -> {out!r}"
    assert not STRAY.search(out), f"{case_id}: stray digit or symbol in {out!r}"


@pytest.mark.parametrize(("case_id", "text", "accepted"), LLM, ids=[case[0] for case in LLM])
def test_llm_text_case(case_id: str, text: str, accepted: tuple[str, ...]) -> None:
    out = plan_text(text, normalize=True, chunking=True, threshold=220, target=170).text
    assert out in accepted, f"{case_id}: {text!r} -> {out!r}"
    assert not re.search(r"[0-9#*`_\[\]|>~]", out.replace("max_tokens", "").replace("[laughs]", "")), out
