"""bench/sim/burst_levers.py: the goal bursts at vLLM's published step, one onboarding lever at a time."""

from __future__ import annotations

import json

from bench.sim.burst_levers import MODEL, MODEL_SR_TF32, RUNGS, jobs_for, run_one, rung_fields, sim_config
from bench.standin.cost_model import CostModel


def test_each_rung_keeps_the_rungs_above_it_and_merges_admission_settings() -> None:
    assert rung_fields(0) == {}
    last = rung_fields(len(RUNGS) - 1)
    assert last["policy"] == {"hold_slack_s": 1.0}
    assert last["latency"] == "exact"
    assert last["streaming"] == {"first_chunk_tokens": 20, "growth": 1.2}
    assert last["admission"] == {
        "ramp_floor": 64,
        "pace_margin": 1.5,
        "max_codec_share": 1.6,
        "spacing_s": 0.0,
    }


def test_a_rung_reaches_the_simulator_as_its_settings() -> None:
    model = CostModel.load(MODEL)
    config = sim_config(model, "64 @16k within 2 s", 3, "served", 0)
    assert config.policy.hold_slack_s == 1.0
    assert config.latency == "exact"
    assert config.streaming is not None and config.streaming.first_chunk_tokens == 20
    assert config.admission == {"ramp_floor": 64}
    assert sim_config(model, "64 @16k within 2 s", 0, "served", 0).policy.hold_slack_s == float("inf")


def test_the_published_step_models_differ_from_the_h200_model_only_where_they_say() -> None:
    step, tf32 = CostModel.load(MODEL), CostModel.load(MODEL_SR_TF32)
    assert (step.llm_step.fixed, step.llm_step.per_unit, step.llm_prefill.fixed) == (1.7, 0.02, 0.0)
    assert step.decode == tf32.decode and step.llm_step == tf32.llm_step
    assert tf32.sr.fixed < step.sr.fixed
    assert "53060" in json.loads(MODEL.read_text())["source"]  # where the step's figure comes from


def test_the_ladder_runs_every_rung_on_the_goal_bursts_and_the_context_as_served() -> None:
    jobs = jobs_for(MODEL, MODEL_SR_TF32, (("64 @16k within 2 s", 64, 2.0, 16_000),), (0,), True)
    rungs = {rung for _, burst, rung, _, _ in jobs if burst == "64 @16k within 2 s"}
    assert rungs == set(range(len(RUNGS)))
    context = [j for j in jobs if j[1] != "64 @16k within 2 s"]
    assert {rung for _, _, rung, _, _ in context} == {0}
    assert {m for m, burst, *_ in context if "48k" in burst} == {str(MODEL), str(MODEL_SR_TF32)}


def test_one_run_reports_what_the_table_reads() -> None:
    row = run_one((str(MODEL), "64 @16k within 2 s", 3, "served", 0))
    assert row["rung"] == "ramp floor 64" and row["admitted"] == 64 and row["underran"] == 0
    assert row["ttfa_ms_p95"] is not None
