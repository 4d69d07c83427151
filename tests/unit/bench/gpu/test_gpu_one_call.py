"""One device call settles `concurrency`, `scheduler`, `service` and `service48` (bench/gpu/one_call.py): the budgets' arithmetic,
and which levels a result cut short still lacks. The writing of each level as it is measured, and a cut call's
resumption, run on this CPU in tests/integration/test_gpu_one_call.py."""

from __future__ import annotations

from bench.gpu import one_call, service_load


def test_the_steps_budgets_and_margins_fit_nine_minutes() -> None:
    assert one_call.CALL_S <= 9 * 60
    assert set(one_call.STEP_S) == {"concurrency", "scheduler", "apbwe_variants", "service", "service48"}
    assert one_call.worst_case_s(service_load.CELL_MARGIN_S) <= one_call.CALL_S
    # The H200's scheduler step took 61 s with its two captures; here each is bounded well inside the step.
    assert 2 * one_call.CAPTURE_S + 30 <= one_call.STEP_S["scheduler"]


def test_a_step_gets_what_is_left_of_the_call() -> None:
    assert one_call.budget_left("service", 0.0) == one_call.STEP_S["service"]
    left = one_call.CALL_S - one_call.INSTALL_S - 400.0
    assert one_call.budget_left("service48", 400.0) == min(one_call.STEP_S["service48"], left)
    assert one_call.budget_left("service48", 10_000.0) == 0.0


def _row(streams: int, schedule: str) -> dict:
    return {"streams": streams, "schedule": schedule}


def test_a_result_cut_short_lacks_its_unmeasured_levels_and_those_skipped() -> None:
    cut = {
        "levels": [1, 8, 32],
        "schedules": ["balanced", "lowest"],
        "rows": [_row(1, "balanced"), _row(1, "lowest"), _row(8, "balanced")],
        "skipped_levels": [],
        "partial": True,
    }
    assert one_call.missing_levels(cut) == [8, 32]
    finished = {**cut, "partial": False, "rows": cut["rows"] + [_row(8, "lowest")], "skipped_levels": [32]}
    assert one_call.missing_levels(finished) == [32]
    assert one_call.missing_levels({**finished, "skipped_levels": []}) == []
    assert one_call.missing_levels(None) == [] and one_call.missing_levels({"error": "x"}) == []
    # A resumed call cut again: its merged result lists only measured levels; the plans say what was wanted.
    merged = {**cut, "levels": [1, 8], "plan": [{"streams": n} for n in (1, 8, 32)]}
    assert one_call.missing_levels(merged) == [8, 32]
