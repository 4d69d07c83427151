"""Admission with `engine_lead_pace` set (services/device/engine_lead.py): while the engine gives each generating
request that many times real time, neither the codec-cost cap nor the switch to the exact first chunk reads the
codec's measured cost; below it both do, as before. Simulated clock, hand-set figures; no timings."""

from __future__ import annotations

from services.device.admission import Admission
from services.device.engine_lead import ENGINE_LEAD_PACE, MEASURED_LEAD_PACE, engine_leads
from tests.codec_fakes import FiguresScheduler


def _load(
    sched: FiguresScheduler, adm: Admission, seconds: float, tokens_per_request_s: float, requests: int
) -> None:
    """`seconds` of the open streams costing the codec 0.9 of the device, the engine giving each request the pace."""
    for _ in range(round(seconds * 10)):
        sched.now += 0.1
        sched.stats.busy_seconds += 0.09
        adm.note_tokens(round(requests * tokens_per_request_s / 10))


def test_off_by_default_and_a_pace_compared_with_real_time() -> None:
    assert (
        ENGINE_LEAD_PACE == float("inf")
        and Admission(FiguresScheduler()).engine_lead_pace == ENGINE_LEAD_PACE
    )
    assert engine_leads(111.0, 50.0, 2.2) and not engine_leads(109.0, 50.0, 2.2)
    assert not engine_leads(None, 50.0, 2.2)  # not measured yet: the measures decide as before
    assert not engine_leads(1e9, 50.0, ENGINE_LEAD_PACE)


def test_a_leading_engine_keeps_the_short_first_chunk_and_a_slower_one_gets_exact_again() -> None:
    sched, generating = FiguresScheduler(), [4]
    adm = Admission(sched, generating=lambda: generating[0], engine_lead_pace=MEASURED_LEAD_PACE)
    default = Admission(sched, generating=lambda: generating[0])
    sched.active_streams = 9
    _load(sched, adm, 6.0, 150, 4)  # 3x real time; the codec's measured share with one more: 1.0 > 0.8
    default.codec, default.llm = adm.codec, adm.llm  # the same measures
    assert default.first_chunk_schedule("balanced") == "exact"
    assert adm.first_chunk_schedule("balanced") == "balanced"
    assert adm.first_chunks == {("balanced", "engine_ahead"): 1} and adm.long_first_chunks == 0
    _load(sched, adm, 1.0, 105, 4)  # 2.1x: under the lead, over exact's 2x: the codec is read, exact
    assert adm.first_chunk_schedule("balanced") == "exact" and adm.long_first_chunks == 1
    assert adm.first_chunk_schedule("exact") == "exact"  # asked for: never changed


def test_the_codec_cap_is_unread_while_the_engine_leads_and_refuses_again_once_it_does_not() -> None:
    sched, generating = FiguresScheduler(), [4]
    adm = Admission(
        sched, generating=lambda: generating[0], engine_lead_pace=MEASURED_LEAD_PACE, ramp_floor=10**6
    )
    sched.active_streams = 2  # 0.45 codec s per stream-second x 3 = 1.35 of the device: past the 1.2 cap
    _load(sched, adm, 6.0, 150, 4)
    assert adm.decide().admit
    assert "codec_cost" not in adm.refused
    _load(sched, adm, 1.0, 105, 4)
    refused = adm.decide()
    assert not refused.admit and refused.rule == "codec_cost"
