"""Admission with `exact_after_refusal_s` set: a newcomer is switched to the exact first chunk while a capacity rule
refused within that many seconds, whatever the codec's share; a ramp refusal is not one. Off by default. Simulated
clock, hand-set figures; no timings."""

from __future__ import annotations

from services.device.admission import CAPACITY_RULES, Admission
from tests.codec_fakes import FiguresScheduler
from tests.unit.services.device.test_engine_lead import _load


def test_off_by_default_the_share_alone_decides() -> None:
    sched = FiguresScheduler()
    adm = Admission(sched, generating=lambda: 4)
    assert adm.first_chunk_choices.exact_after_refusal_s is None
    sched.active_streams = 9
    # the codec's share with one more: 1.0, past the switch's 0.8; the engine at 3x real time
    _load(sched, adm, 6.0, 150, 4)
    assert adm.first_chunk_schedule("balanced") == "exact"
    assert adm.first_chunks == {("exact", "codec_busy"): 1}


def test_a_capacity_refusal_switches_newcomers_to_exact_for_its_memory_and_a_ramp_refusal_does_not() -> None:
    sched = FiguresScheduler()
    adm = Admission(
        sched,
        generating=lambda: 4,
        exact_after_refusal_s=2.0,
        short_schedule_share=float("inf"),  # the share alone never switches
        ramp_floor=1,
        ramp_share=0.0,
    )
    sched.active_streams = 9
    _load(sched, adm, 6.0, 150, 4)
    assert adm.first_chunk_schedule("balanced") == "balanced"
    assert adm.first_chunks == {("balanced", "codec_light"): 1}

    assert adm.decide().admit  # the ramp now holds one recent admission
    ramp = adm.decide()
    assert not ramp.admit and ramp.rule == "ramp" and ramp.rule not in CAPACITY_RULES
    assert adm.first_chunk_schedule("balanced") == "balanced"  # a ramp refusal says nothing of capacity

    _load(sched, adm, 1.5, 150, 4)  # the ramp's window passes
    sched.active_streams = 12  # the codec's share with one more: 1.3, past the 1.2 cap
    cost = adm.decide()
    assert not cost.admit and cost.rule == "codec_cost"
    sched.active_streams = 2  # the share is light again, but the device refused a moment ago
    assert adm.first_chunk_schedule("balanced") == "exact" and adm.long_first_chunks == 1
    assert adm.first_chunks[("exact", "refusing")] == 1
    _load(sched, adm, 2.5, 150, 4)  # past the 2 s memory
    assert adm.first_chunk_schedule("balanced") == "balanced"


def test_with_exact_after_ramp_a_ramp_refusal_or_hold_switches_newcomers_too() -> None:
    """Arrivals faster than the ramp lets in get the exact first chunk before any capacity rule refuses: a refusal by
    the ramp, or a caller it held and then admitted, counts for `exact_after_refusal_s` as a capacity refusal does."""
    import asyncio

    sched = FiguresScheduler()
    adm = Admission(
        sched,
        generating=lambda: 4,
        exact_after_refusal_s=2.0,
        exact_after_ramp=True,
        short_schedule_share=float("inf"),
        ramp_floor=1,
        ramp_share=0.0,
    )
    assert adm.first_chunk_choices.exact_after_ramp
    sched.active_streams = 9
    _load(sched, adm, 6.0, 150, 4)
    assert adm.first_chunk_schedule("balanced") == "balanced"
    assert adm.decide().admit
    assert adm.decide().rule == "ramp"
    assert adm.first_chunk_schedule("balanced") == "exact"
    assert adm.first_chunks[("exact", "refusing")] == 1
    _load(sched, adm, 2.5, 150, 4)  # past the memory, and the ramp's window
    assert adm.first_chunk_schedule("balanced") == "balanced"

    # A caller the ramp held and then let in (admit() waits it out): the same.
    assert adm.decide().admit

    async def sleep(seconds: float) -> None:  # the wait, on the simulated clock, the engine going on
        _load(sched, adm, max(seconds, 0.1), 150, 4)

    adm.sleep = sleep
    held = asyncio.run(adm.admit(max_wait_s=2.0))
    assert held.admit and held.waited_s > 0
    assert adm.first_chunk_schedule("balanced") == "exact"
