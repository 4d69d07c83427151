"""The input gate (services/deployment/input_gate.py): a container's input slots close on admission's capacity
refusals and open on its headroom, so the fleet's router sends new inputs where there is room. The real `Admission`
on a fake scheduler and a virtual clock; the router's adapter (`set_slots`) is a list the test reads."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from services.deployment.input_gate import InputGate
from services.deployment.modal_deployment import ContainerLifecycle, ModalConfig
from services.device.admission import Admission
from tests.unit.services.device.test_admission_share import _Scheduler as _SharedScheduler


class _Scheduler(_SharedScheduler):
    """What Admission reads (test_admission_share's); `misses` > 0 is a device already short (rule 1, a capacity
    rule, refuses)."""

    def __init__(self) -> None:
        super().__init__(clock=None)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _gate(**knobs: Any) -> tuple[InputGate, Admission, _Scheduler, _Clock, list[int]]:
    clock, sched, slots = _Clock(), _Scheduler(), []
    admission = Admission(sched, clock=clock, ramp_floor=1000)
    gate = InputGate(lambda: admission, slots.append, open_slots=256, clock=clock, **knobs)
    return gate, admission, sched, clock, slots


def test_a_capacity_refusal_closes_the_slots_and_headroom_opens_them_after_the_retry_after() -> None:
    gate, admission, sched, clock, slots = _gate()
    assert admission.decide().admit
    gate.check()
    assert gate.is_open and slots == []  # admitting streams touches nothing

    sched.misses = 1  # the device ran a stream dry: admission refuses the next for capacity
    assert not admission.decide().admit
    gate.check()
    assert not gate.is_open and slots == [1]  # the streams under way keep their slot, no new input is fetched

    sched.misses = 0
    clock.now += 0.5
    gate.check()
    assert not gate.is_open, "a retry within its Retry-After must not find this container open again"
    clock.now += 0.6
    gate.check()
    assert gate.is_open and slots == [1, 256]
    assert gate.closings == 1


def test_the_gate_stays_closed_while_admission_still_refuses_and_each_refusal_restarts_the_wait() -> None:
    gate, admission, sched, clock, slots = _gate()
    sched.misses = 1
    admission.decide()
    gate.check()
    clock.now += 5
    gate.check()
    assert not gate.is_open  # no headroom yet
    admission.decide()  # another refusal while closed
    gate.check()
    sched.misses = 0
    clock.now += 0.5
    gate.check()
    assert not gate.is_open
    clock.now += 0.6
    gate.check()
    assert gate.is_open and slots == [1, 256]


def test_refusals_that_are_not_capacity_leave_the_slots_alone() -> None:
    """The ramp refuses while the measures catch up with a burst (it is waited out, not a full device)."""
    clock, sched, slots = _Clock(), _Scheduler(), []
    admission = Admission(sched, clock=clock, ramp_floor=1)
    gate = InputGate(lambda: admission, slots.append, open_slots=256, clock=clock)
    decisions = [admission.decide() for _ in range(3)]
    assert [d.rule for d in decisions if not d.admit] and all(
        d.rule == "ramp" for d in decisions if not d.admit
    )
    gate.check()
    assert gate.is_open and slots == []


def test_without_admission_nothing_happens_and_a_rebuilt_admission_brings_no_old_refusal() -> None:
    clock, slots = _Clock(), []
    current: dict[str, Any] = {"admission": None}
    gate = InputGate(lambda: current["admission"], slots.append, open_slots=8, clock=clock)
    gate.check()
    current["admission"] = Admission(_Scheduler(), clock=clock, ramp_floor=1000)
    gate.check()
    sched = _Scheduler()
    sched.misses = 1
    rebuilt = Admission(sched, clock=clock, ramp_floor=1000)
    rebuilt.decide()  # refused before the gate watched it
    current["admission"] = rebuilt
    gate.check()
    assert gate.is_open and slots == []


def test_a_failing_adapter_leaves_the_gate_as_it_was() -> None:
    calls: list[int] = []

    def broken(slots: int) -> None:
        calls.append(slots)
        raise RuntimeError("router unreachable")

    clock, sched = _Clock(), _Scheduler()
    admission = Admission(sched, clock=clock, ramp_floor=1000)
    gate = InputGate(lambda: admission, broken, open_slots=8, clock=clock)
    sched.misses = 1
    admission.decide()
    gate.check()
    assert calls == [1] and gate.is_open  # tried, failed, still open: it tries again on the next refusal


def test_the_container_starts_the_gate_on_the_serving_loop_and_stops_it() -> None:
    """ContainerLifecycle.resume (every start, after any restore) runs the gate over the runtime's admission with
    the container's max_inputs open; stop ends it."""
    slots: list[int] = []
    sched = _Scheduler()

    async def scenario() -> None:
        admission = Admission(sched, ramp_floor=1000)
        host = ContainerLifecycle(ModalConfig(max_containers=1, min_containers=1), set_slots=slots.append)
        host.runtime = SimpleNamespace(admission=admission, shutdown=_nothing)
        await host.resume()
        assert host.input_gate is not None and host.input_gate.open_slots == 256
        host.input_gate.min_closed_s = 0.05
        await asyncio.sleep(0.05)
        sched.misses = 1
        admission.decide()
        await asyncio.sleep(0.25)
        assert slots == [1]
        sched.misses = 0
        await asyncio.sleep(0.4)
        assert slots == [1, 256]
        await host.stop()
        assert host.input_gate._task is None

    asyncio.run(scenario())


async def _nothing() -> None:
    return None
