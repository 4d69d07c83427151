"""core/llm/engine_pace.py: one request's pace line, as the engine's scheduler and the API process read it."""

from __future__ import annotations

import pytest

from core.llm.engine_pace import EnginePace, PaceLine, pace_of

PACE = EnginePace(lead_ids=10, rate=1.0, resume_gap_ids=5)  # 10 ids, then 50 a second


def test_a_request_is_held_past_its_line_until_it_is_the_gap_behind_it() -> None:
    line = PaceLine(PACE, started=100.0)
    assert not line.hold(9, 100.0)  # a newcomer runs: its first window needs fewer ids than the lead
    assert line.hold(10, 100.0)  # on the line: held
    assert line.hold(10, 100.09)  # the line at 14.5: not yet the gap of 5 behind it
    assert line.resumes_at(10) == pytest.approx(100.1, abs=1e-5)
    assert not line.hold(10, 100.11)  # 15.5: more than 5 behind, it steps again
    assert not line.hold(14, 100.11)  # stepping, it runs up to the line (15.5)
    assert line.hold(16, 100.11)


def test_the_engine_reads_the_pace_the_request_carries() -> None:
    assert pace_of(PACE.extra_args()) == PACE
    assert pace_of(None) is None and pace_of({"other": 1}) is None


def test_a_faster_time_stretch_raises_the_rate_and_a_slower_one_keeps_it() -> None:
    assert PACE.faster(1.5) == EnginePace(10, 1.5, 5)
    assert PACE.faster(0.75) is PACE


@pytest.mark.parametrize("fields", [{"lead_ids": 0}, {"rate": 0.0}, {"resume_gap_ids": -1}])
def test_a_pace_that_would_never_let_a_request_step_is_refused(fields: dict) -> None:
    with pytest.raises(ValueError, match="engine pace"):
        EnginePace(**fields)
