"""Turns between keys on a CPU: a key's codec windows wait in the queue while a key that used less is busy, and
its decode seconds add to the same account as its engine steps (services/device/key_share.py `CpuTurns`)."""

from __future__ import annotations

import asyncio

from core.llm.step_gate import BUSY_AFTER_STEP_S, REQUEST_COST_S, FairStepGate, OwnerUsage
from services.device import CodecScheduler, SchedulerPolicy
from services.device.key_share import CpuTurns
from tests.codec_fakes import FakeClock, RecordingRunner, window


def _gate(clock: FakeClock, **used: float) -> FairStepGate:
    gate = FairStepGate(clock=clock, usage=OwnerUsage(clock=clock))
    for key, seconds in used.items():
        gate.account.charge(key, seconds)
    return gate


def test_a_heavier_key_waits_while_a_lighter_key_steps_and_a_lone_key_never_waits() -> None:
    clock = FakeClock()
    gate = _gate(clock, A=2.0, B=0.1)
    turns = CpuTurns(lambda: gate)
    assert turns.held({"A"}, set()) == set()  # alone: A's windows run whatever it used
    assert turns.held({"A"}, {"A"}) == set()  # one key's many streams never wait for each other
    with gate.turn("B"):
        assert gate.busy_owners() == {"B"}
        assert turns.held({"A"}, set()) == {"A"}
        assert turns.held({"A", "B"}, set()) == {"A"}  # B's own windows go on
    clock.now += BUSY_AFTER_STEP_S / 2  # between two of B's steps: B still counts as stepping
    assert turns.held({"A"}, set()) == {"A"}
    clock.now += BUSY_AFTER_STEP_S
    assert turns.held({"A"}, set()) == set()  # B idle: A goes on
    assert turns.held({"A"}, {"B"}) == {"A"}  # a call of B's on the device counts as busy too
    assert turns.held({"B"}, {"A"}) == set()  # and a heavier key's call never holds a lighter key


def test_decode_seconds_add_to_the_key_s_step_usage() -> None:
    clock = FakeClock()
    gate = _gate(clock)
    turns = CpuTurns(lambda: gate)
    with gate.turn("A"):
        clock.now += 0.25  # a step of 250 ms
    turns.charge([("A", 30), ("B", 10)], 0.4)  # a call of two rows: its seconds by the rows' work
    assert abs(gate.usage("A") - 0.55) < 1e-9 and abs(gate.usage("B") - 0.1) < 1e-9


def test_many_small_requests_rank_heavier_than_one_request_of_the_same_steps() -> None:
    clock = FakeClock()
    gate = _gate(clock)
    for owner, requests in (("A", 4), ("B", 1)):
        for _ in range(requests):
            gate.note_request(owner)
            with gate.turn(owner):
                clock.now += 0.04 / requests  # 40 ms of steps either way
    assert gate.usage("A") - gate.usage("B") > 2.5 * REQUEST_COST_S  # three more requests (less some decay)
    assert CpuTurns(lambda: gate).held({"A", "B"}, set()) == {"A"}


def test_without_an_engine_gate_the_codec_keeps_an_account_of_its_own() -> None:
    turns = CpuTurns(lambda: None)
    turns.charge([("A", 1)], 1.0)
    assert turns.usage.usage("A") > 0.9
    assert turns.held({"A"}, set()) == set()
    assert turns.held({"A", "B"}, set()) == {"A"}  # both queued: the lighter key's windows first


async def test_the_scheduler_queues_a_heavier_key_s_windows_until_the_lighter_key_is_idle() -> None:
    clock = FakeClock()
    gate = _gate(clock, A=2.0)
    runner = RecordingRunner(clock)
    sched = CodecScheduler(runner, SchedulerPolicy.for_cpu(2), clock=clock, turns=CpuTurns(lambda: gate))
    async with sched:
        flood, light = sched.open_stream(owner="A"), sched.open_stream(owner="B")
        with gate.turn("B"):  # B is stepping in the engine
            a = asyncio.ensure_future(flood.decode(window(16, tag=1)))
            for _ in range(5):
                await asyncio.sleep(0)
            assert not a.done() and runner.calls == []
            assert [reason for _, _, _, reason in sched.why_waiting()] == ["lighter_key_busy"]
            b = await light.decode(window(16, tag=2))  # B's own window runs at once
            assert b[0] == 2 and not a.done()
        clock.now += 2 * BUSY_AFTER_STEP_S  # B's request is over
        audio = await asyncio.wait_for(a, timeout=5)
    assert audio[0] == 1 and runner.log == [2, 1]
    assert gate.usage("B") > 0.0  # B's decode was charged to B


async def test_without_turns_a_heavier_key_s_window_runs_beside_a_stepping_key() -> None:
    clock = FakeClock()
    gate = _gate(clock, A=2.0)
    runner = RecordingRunner(clock)
    async with CodecScheduler(runner, SchedulerPolicy.for_cpu(2), clock=clock) as sched:
        flood = sched.open_stream(owner="A")
        with gate.turn("B"):
            audio = await asyncio.wait_for(flood.decode(window(16, tag=1)), timeout=5)
    assert audio[0] == 1
