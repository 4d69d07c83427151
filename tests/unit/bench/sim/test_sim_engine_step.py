"""bench/sim/engine_step.py: the goal bursts as the engine step's fixed device time falls."""

from __future__ import annotations

import pytest

from bench.sim.engine_step import MODEL, engine_costs, engine_model, run_one
from bench.standin.cost_model import CostModel


def test_only_the_engine_fixed_parts_and_the_host_change() -> None:
    base = CostModel.load(MODEL)
    model = engine_model(base, 1.0, 0.0)
    assert (model.llm_step.fixed, model.llm_prefill.fixed) == (1.0, 0.0)
    assert model.llm_step.per_unit == base.llm_step.per_unit
    assert model.llm_prefill.per_unit == base.llm_prefill.per_unit
    assert (model.decode, model.sr) == (base.decode, base.sr)
    assert model.host_ms_per_audio_second == pytest.approx(1.4)
    assert "1.0 ms" in model.name


def test_a_cheaper_step_gives_the_engine_a_smaller_share_of_the_same_burst() -> None:
    runs = [
        run_one((str(MODEL), fixed, "64 @16k within 2 s", "off", 0)) for fixed in ((3.0, 3.0), (1.0, 0.0))
    ]
    assert [r["admitted"] for r in runs] == [64, 64]
    assert runs[1]["engine_share_onboarding"] < runs[0]["engine_share_onboarding"]
    assert runs[1]["ttfa_ms_p95"] < runs[0]["ttfa_ms_p95"]


def test_the_models_own_engine_costs_come_first_and_once() -> None:
    base = CostModel.load(MODEL)
    assert engine_costs(base) == ((3.0, 3.0), (3.0, 0.0), (2.0, 0.0), (1.0, 0.0))
    measured = engine_model(base, 2.0, 0.0)
    assert engine_costs(measured) == ((2.0, 0.0), (3.0, 0.0), (1.0, 0.0))
