"""Admission with `exact_needs_refusal_s` set: a newcomer over the short-schedule share is switched to the exact first
chunk only while a capacity rule refused within that many seconds; a ramp refusal is not one. Off by default.
Simulated clock, hand-set figures; no timings."""

from __future__ import annotations

import math

from services.device.admission import CAPACITY_RULES, Admission
from tests.unit.services.device.test_engine_lead import _load, _Scheduler


def test_off_by_default_the_share_alone_switches_to_exact() -> None:
    sched = _Scheduler()
    adm = Admission(sched, generating=lambda: 4)
    assert adm.exact_needs_refusal_s == math.inf
    sched.active_streams = 9
    # the codec's share with one more: 1.0, past the switch's 0.8; the engine at 3x real time
    _load(sched, adm, 6.0, 150, 4)
    assert adm.first_chunk_schedule("balanced") == "exact"


def test_the_short_chunk_stays_until_a_capacity_rule_refuses_and_returns_after_the_memory() -> None:
    sched = _Scheduler()
    adm = Admission(sched, generating=lambda: 4, exact_needs_refusal_s=2.0, ramp_floor=1, ramp_share=0.0)
    sched.active_streams = 9
    _load(sched, adm, 6.0, 150, 4)
    assert adm.first_chunk_schedule("balanced") == "balanced"
    assert adm.first_chunks == {("balanced", "none_refused"): 1}

    assert adm.decide().admit  # the ramp now holds one recent admission
    ramp = adm.decide()
    assert not ramp.admit and ramp.rule == "ramp" and ramp.rule not in CAPACITY_RULES
    assert adm.first_chunk_schedule("balanced") == "balanced"  # a ramp refusal says nothing of capacity

    _load(sched, adm, 1.5, 150, 4)  # the ramp's window passes
    sched.active_streams = 12  # the codec's share with one more: 1.3, past the 1.2 cap
    cost = adm.decide()
    assert not cost.admit and cost.rule == "codec_cost"
    assert adm.first_chunk_schedule("balanced") == "exact" and adm.long_first_chunks == 1
    sched.active_streams = 9
    _load(sched, adm, 2.5, 150, 4)  # past the 2 s memory
    assert adm.first_chunk_schedule("balanced") == "balanced"
