"""Long text is normalised in pieces, so no single regular-expression call holds the interpreter lock for long: a
free `POST /v1/tts/normalize` of 40,000 `![` (the hostile round's Markdown attack B) handed the whole line to each
rule, and another key's first audio waited behind each call. No normalisation call is handed more than
`NORMALIZE_PIECE_CHARS` characters, and text cut at line breaks plans exactly as it did whole."""

from __future__ import annotations

import pytest

from services.pipeline import text_plan
from services.pipeline.text_plan import NORMALIZE_PIECE_CHARS, plan_text, text_pieces

PLAN = {"normalize": True, "chunking": True, "threshold": 400, "target": 300}


@pytest.mark.parametrize(
    "text",
    [
        "![" * 20_000,
        "[^" * 20_000,
        "a" * 40_000,
        "The 3 ships sailed 45 km on 12 March 2020. " * 1_000,
    ],
    ids=["image-openers", "footnote-openers", "one-word", "prose"],
)
def test_no_normalisation_call_gets_more_than_a_piece(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    normalize = text_plan.normalize_text

    def spy(piece: str, **options: bool):
        seen.append(len(piece))
        return normalize(piece, **options)

    monkeypatch.setattr(text_plan, "normalize_text", spy)
    plan_text(text, **PLAN)
    assert len(seen) >= len(text) // NORMALIZE_PIECE_CHARS
    assert max(seen) <= NORMALIZE_PIECE_CHARS


def test_pieces_cut_at_line_breaks_then_spaces_and_lose_nothing() -> None:
    lines = "\n".join(f"Line {n} has a few words." for n in range(400))
    pieces = text_pieces(lines)
    assert "".join(pieces) == lines and all(len(p) <= NORMALIZE_PIECE_CHARS for p in pieces)
    assert all(p.endswith("\n") for p in pieces[:-1])
    spaced = "word " * 2_000
    assert all(p.endswith(" ") for p in text_pieces(spaced)[:-1]) and "".join(text_pieces(spaced)) == spaced
    run = "x" * 9_000
    assert [len(p) for p in text_pieces(run)] == [4_000, 4_000, 1_000]
    assert plan_text(run, **{**PLAN, "chunking": False}).text == run  # a run cut inside stays one word


def test_text_cut_at_line_breaks_plans_as_it_did_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n".join(
        f"Chapter {n}: on 12 March 2020 the {n} ships sailed 45 km, costing $3.50 each (Dr. Smith paid)."
        for n in range(120)
    )
    pieced = plan_text(text, **PLAN)
    monkeypatch.setattr(text_plan, "NORMALIZE_PIECE_CHARS", 10**9)
    monkeypatch.setattr(text_plan.text_pieces, "__defaults__", (10**9,))
    whole = plan_text(text, **PLAN)
    assert pieced.text == whole.text and pieced.chunks == whole.chunks
