"""Admission waits instead of refusing while only a rule that passes by itself refuses: the ramp, by default (spacing
can be waited out too, `wait_rules`, the variant bench.sim.overload compares): callers are let in one by one, in
arrival order, within a bound; any other rule refuses at once. On a virtual clock: order, waits and counts, never wall
timings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.sim.virtual_loop import run_virtual
from services.device.admission import Admission, AdmissionDecision
from services.device.telemetry import SchedulerStats


class _Scheduler:
    """The figures Admission reads, on the running loop's clock."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.active_streams = 40
        self.misses = 0
        self.stats = SchedulerStats()

    def busy_ratio(self) -> float:
        return 0.0

    def recent_misses(self, grace_s: float = 0.0) -> int:
        return self.misses

    def worst_recent_miss(self, grace_s: float = 0.0) -> float | None:
        return None  # no lateness figure: the plain reason


async def _near_the_pace_floor(**settings: Any) -> tuple[Admission, _Scheduler, asyncio.Task[None]]:
    """Ten requests generating 108 tokens/s each: one more projects ~105, within 10% of the 100 (twice real time)
    the pace rule asks, so new streams are spaced 30 ms apart. The engine keeps that pace in the background."""
    loop = asyncio.get_running_loop()
    sched = _Scheduler(loop.time)
    adm = Admission(sched, clock=loop.time, generating=lambda: 10, ramp_floor=100, **settings)

    async def engine() -> None:
        while True:
            await asyncio.sleep(0.01)
            adm.note_tokens(round(108 * 10 * 0.01))

    task = asyncio.ensure_future(engine())
    await asyncio.sleep(2.0)
    assert adm.pace() == pytest.approx(108, rel=0.02)
    return adm, sched, task


async def _arrive(adm: Admission, after_s: float) -> tuple[AdmissionDecision, float]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(after_s)
    decision = await adm.admit()
    return decision, loop.time()


def test_near_a_limit_spacing_refuses_at_once_by_default() -> None:
    """Waiting out spacing admitted a queue of callers one per 30 ms, faster than refusing lets them in, and admitted
    streams underran in sustained overload (bench.sim.overload): the service refuses them."""

    async def main() -> tuple[list[AdmissionDecision], float, Admission]:
        adm, _, engine = await _near_the_pace_floor()
        t0 = asyncio.get_running_loop().time()
        out = await asyncio.gather(*(_arrive(adm, 0.005 * i) for i in range(4)))
        engine.cancel()
        return [d for d, _ in out], asyncio.get_running_loop().time() - t0, adm

    decisions, took, adm = run_virtual(main)
    assert [d.admit for d in decisions] == [True, False, False, False]
    assert [d.rule for d in decisions[1:]] == ["spacing"] * 3 and all(d.waited_s == 0 for d in decisions)
    assert took == pytest.approx(0.015) and adm.refused == {"spacing": 3}


def test_with_spacing_waited_out_a_cluster_is_let_in_one_by_one_in_arrival_order() -> None:
    async def main() -> tuple[list[tuple[AdmissionDecision, float]], float, Admission]:
        adm, _, engine = await _near_the_pace_floor(wait_rules=("spacing", "ramp"))
        t0 = asyncio.get_running_loop().time()
        out = await asyncio.gather(*(_arrive(adm, 0.005 * i) for i in range(4)))  # four within 15 ms
        engine.cancel()
        return out, t0, adm

    out, t0, adm = run_virtual(main)
    assert [d.admit for d, _ in out] == [True] * 4
    admitted_at = [at - t0 for _, at in out]
    assert admitted_at == pytest.approx([0.0, 0.03, 0.06, 0.09], abs=1e-3)  # one per 30 ms, first come first
    assert [d.waited_s for d, _ in out] == pytest.approx([0.0, 0.025, 0.05, 0.075], abs=1e-3)
    assert adm.refused == {} and adm.waited == 3 and adm.admitted == 4
    # decide(), for a caller that cannot wait, refuses the same cluster.
    assert not adm.decide().admit and adm.refused == {"spacing": 1}


def test_a_wait_past_the_bound_is_refused_and_counted_once() -> None:
    async def main() -> tuple[list[bool], Admission]:
        adm, _, engine = await _near_the_pace_floor(max_wait_s=0.04, wait_rules=("spacing", "ramp"))
        out = await asyncio.gather(*(_arrive(adm, 0.005 * i) for i in range(4)))
        engine.cancel()
        return [d.admit for d, _ in out], adm

    admitted, adm = run_virtual(main)
    # The second waits 25 ms; the third and fourth would wait 45 and 70 ms (their turn comes after the second's).
    assert admitted == [True, True, False, False]
    assert adm.refused == {"spacing": 2} and adm.admitted == 2


def test_a_rule_that_does_not_pass_by_itself_refuses_at_once() -> None:
    async def main() -> tuple[AdmissionDecision, float, Admission]:
        adm, sched, engine = await _near_the_pace_floor()
        sched.misses = 1  # a playing stream missed its deadline: the device is short; waiting would not help
        t0 = asyncio.get_running_loop().time()
        decision = await adm.admit()
        engine.cancel()
        return decision, asyncio.get_running_loop().time() - t0, adm

    decision, took, adm = run_virtual(main)
    assert not decision.admit and decision.rule == "misses" and decision.retry_after_s == 2
    assert took == 0.0 and decision.waited_s == 0.0 and adm.refused == {"misses": 1}


def test_the_ramp_is_waited_out_when_its_oldest_admission_leaves_the_window_in_time() -> None:
    async def main() -> tuple[list[tuple[AdmissionDecision, float]], Admission]:
        loop = asyncio.get_running_loop()
        sched = _Scheduler(loop.time)
        sched.active_streams = 0
        adm = Admission(sched, clock=loop.time, ramp_floor=2, max_wait_s=0.5)
        early = [await _arrive(adm, 0.0), await _arrive(adm, 0.7)]  # two in the window: the floor
        late = await asyncio.gather(_arrive(adm, 0.1), _arrive(adm, 0.15))  # at 0.8 and 0.85 s
        return early + list(late), adm

    out, adm = run_virtual(main)
    # The third waits until the first (at 0 s) leaves the 1 s window; the fourth would need the second's (1.7 s).
    assert [d.admit for d, _ in out] == [True, True, True, False]
    assert out[2][1] == pytest.approx(1.0, abs=1e-3) and out[3][0].rule == "ramp"
    assert adm.refused == {"ramp": 1}


def test_a_caller_that_leaves_while_waiting_is_neither_admitted_nor_counted() -> None:
    async def main() -> tuple[list[Any], Admission]:
        adm, _, engine = await _near_the_pace_floor(wait_rules=("spacing", "ramp"))
        first = await adm.admit()
        gone = asyncio.ensure_future(_arrive(adm, 0.002))
        after = asyncio.ensure_future(_arrive(adm, 0.004))
        await asyncio.sleep(0.01)
        gone.cancel()  # the client hung up while it waited its turn
        results = await asyncio.gather(gone, after, return_exceptions=True)
        engine.cancel()
        return [first, *results], adm

    (first, gone, (after, _)), adm = run_virtual(main)
    assert first.admit and isinstance(gone, asyncio.CancelledError) and after.admit
    assert adm.admitted == 2 and adm.refused == {}


def test_only_rules_that_pass_by_themselves_can_be_waited_out() -> None:
    with pytest.raises(ValueError, match="pass by themselves"):
        Admission(_Scheduler(lambda: 0.0), wait_rules=("ramp", "llm_pace"))
