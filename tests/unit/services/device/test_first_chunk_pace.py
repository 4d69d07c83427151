"""The first chunk by the engine's pace, and rule 2's margin while 48 kHz streams are live (services/device/
first_chunks.py, admission.py): a newcomer keeps a short first-second schedule only while the engine gives 3x real
time, the exact schedule needs no pace of its own (its chunks are cut when the engine falls behind), the `bursts`
profile's newcomers get the exact schedule past 32 streams before the codec is measured, and rule 2 asks for more
while AP-BWE rows ran recently. Simulated clock, hand-set figures; no timings."""

from __future__ import annotations

import math

from services.device.admission import Admission
from services.device.admission_profiles import ADMISSION_PROFILES
from tests.codec_fakes import FiguresScheduler
from tests.unit.services.device.test_engine_lead import _load


def test_a_newcomer_keeps_the_short_schedule_only_while_the_engine_gives_3x_real_time() -> None:
    sched = FiguresScheduler()
    adm = Admission(sched, generating=lambda: 4)
    sched.active_streams = 9
    _load(sched, adm, 6.0, 150, 4)  # 9 streams cost the codec 0.9 of the device; the engine at 3x real time
    sched.active_streams = 5  # the codec's share with one more: 0.6, under the 0.8 switch
    assert adm.first_chunk_schedule("balanced") == "balanced"
    sched.active_streams = 9
    _load(sched, adm, 2.0, 140, 4)  # 2.8x: the short second's first full chunk would wait on the engine
    sched.active_streams = 5
    assert adm.first_chunk_schedule("balanced") == "exact" and adm.long_first_chunks == 1
    sched.active_streams = 9
    _load(sched, adm, 2.0, 80, 4)  # past the share, the engine at 1.6x: the exact schedule all the same
    assert adm.first_chunk_schedule("lowest") == "exact"
    assert adm.first_chunks == {
        ("balanced", "codec_light"): 1,
        ("exact", "llm_behind"): 1,
        ("exact", "codec_busy"): 1,
    }


def test_the_calibrated_profiles_keep_the_short_schedule_whatever_the_pace() -> None:
    for name in ("own_seconds", "settled"):
        assert ADMISSION_PROFILES[name].admission["short_needs_pace"] == 0.0
    sched = FiguresScheduler(streams=9)
    adm = Admission(sched, generating=lambda: 4, short_needs_pace=0.0)
    _load(sched, adm, 6.0, 80, 4)  # the engine at 1.6x
    sched.active_streams = 5
    assert adm.first_chunk_schedule("balanced") == "balanced"


def test_past_a_count_of_open_streams_an_unmeasured_codec_gives_the_exact_schedule() -> None:
    sched = FiguresScheduler()
    adm = Admission(sched, generating=lambda: 4, unmeasured_short_streams=32)
    assert Admission(FiguresScheduler()).first_chunk_choices.unmeasured_short_streams == math.inf
    sched.active_streams = 31
    assert adm.codec_cost() is None and adm.first_chunk_schedule("balanced") == "balanced"
    sched.active_streams = 32
    assert adm.first_chunk_schedule("balanced") == "exact"
    assert adm.first_chunks == {("balanced", "unmeasured"): 1, ("exact", "unmeasured_busy"): 1}


def test_rule_2_asks_for_the_48khz_margin_while_ap_bwe_rows_ran_within_the_codec_window() -> None:
    sched = FiguresScheduler()
    generating = [10]
    adm = Admission(
        sched,
        generating=lambda: generating[0],
        pace_margin=1.5,
        sr_pace_margin=2.0,
        ramp_floor=10**6,
        max_codec_share=math.inf,
    )
    for _ in range(20):  # 90 tokens/s per request: 1.8x real time
        sched.now += 0.1
        adm.note_tokens(90)
    assert adm.decide().admit  # no 48 kHz stream: 1.5x is enough
    sched.stats.rows_by_kind["sr"] += 3  # AP-BWE rows: a 48 kHz stream is live
    refused = adm.decide()
    assert not refused.admit and refused.rule == "llm_pace"
    for _ in range(51):  # 5.1 s without another AP-BWE row
        sched.now += 0.1
        adm.note_tokens(90)
    assert adm.decide().admit
    assert Admission(FiguresScheduler()).sr_pace_margin is None  # the service's default: one margin


def test_past_a_count_of_open_streams_while_48khz_streams_are_live_newcomers_get_the_exact_chunk_and_no_lead() -> (
    None
):
    sched = FiguresScheduler()
    adm = Admission(sched, generating=lambda: 4, sr_short_streams=32)
    assert Admission(FiguresScheduler()).first_chunk_choices.sr_short_streams == math.inf  # off by default
    sched.active_streams = 40
    # No AP-BWE row yet: no 48 kHz stream is live, so 40 open streams keep the short chunk
    assert adm.first_chunk_schedule("balanced") == "balanced"
    sched.active_streams = 31
    sched.stats.rows_by_kind["sr"] += 3
    assert adm.first_chunk_schedule("balanced") == "balanced" and adm.sr_lead()
    sched.active_streams = 32
    assert adm.first_chunk_schedule("balanced") == "exact" and not adm.sr_lead()
    assert adm.first_chunk_schedule("exact") == "exact"  # asked for: counted as asked
    assert adm.sr_lead(reproducible=True)  # a seeded stream takes what it asked for
    assert adm.sr_leads == {"taken": 1, "sr_busy": 1, "seeded": 1}
    assert adm.first_chunks[("exact", "sr_busy")] == 1 and adm.first_chunks[("balanced", "unmeasured")] == 2
