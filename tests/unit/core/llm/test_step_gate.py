"""The CPU engine's step gate: one key's many requests cannot starve another key's one."""

from __future__ import annotations

import threading

from core.llm.step_gate import FairStepGate


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run_steps(gate: FairStepGate, clock: _Clock, owner: str, steps: int, log: list[str], **kw: bool) -> None:
    for _ in range(steps):
        with gate.turn(owner, **kw):
            clock.now += 0.01  # each step costs 10 ms of engine time
            log.append(owner)


def _flood_then_newcomer(gate: FairStepGate, clock: _Clock, newcomer: str, **kw: bool) -> list[str]:
    """Owner A steps alone for a while; then A's four threads and one newcomer thread step together."""
    log: list[str] = []
    _run_steps(gate, clock, "A", 200, log)  # A's history: 2 s of engine time
    log.clear()
    # Hold the gate while every thread queues up, so the order of grants is the gate's choice alone.
    release = threading.Event()
    holder = threading.Thread(target=lambda: _hold(gate, release))
    holder.start()
    while not gate._busy:  # noqa: SLF001 - wait until the holder owns the gate
        pass
    threads = [threading.Thread(target=_run_steps, args=(gate, clock, "A", 30, log)) for _ in range(4)]
    threads.append(threading.Thread(target=_run_steps, args=(gate, clock, newcomer, 30, log), kwargs=kw))
    for t in threads:
        t.start()
    while len(gate._waiting) < 5:  # noqa: SLF001
        pass
    release.set()
    holder.join()
    for t in threads:
        t.join()
    return log


def _hold(gate: FairStepGate, release: threading.Event) -> None:
    with gate.turn("holder"):
        release.wait()


def test_a_newcomer_steps_before_a_busy_owner() -> None:
    clock = _Clock()
    gate = FairStepGate(clock=clock, return_grace_s=0.5)
    log = _flood_then_newcomer(gate, clock, "B")
    # B has used nothing lately, A two seconds: every one of B's 30 steps comes before A's next.
    assert log[:30] == ["B"] * 30
    assert log.count("A") == 120


def test_background_steps_only_when_no_live_request_waits() -> None:
    clock = _Clock()
    gate = FairStepGate(clock=clock, return_grace_s=0.5)
    log = _flood_then_newcomer(gate, clock, "job", background=True)
    assert log[-30:] == ["job"] * 30


def test_steady_owners_share_evenly_whatever_their_request_counts() -> None:
    clock = _Clock()
    gate = FairStepGate(clock=clock, return_grace_s=0.5)
    log: list[str] = []
    release = threading.Event()
    holder = threading.Thread(target=lambda: _hold(gate, release))
    holder.start()
    while not gate._busy:  # noqa: SLF001
        pass
    threads = [threading.Thread(target=_run_steps, args=(gate, clock, "A", 50, log)) for _ in range(4)]
    threads.append(threading.Thread(target=_run_steps, args=(gate, clock, "B", 50, log)))
    for t in threads:
        t.start()
    while len(gate._waiting) < 5:  # noqa: SLF001
        pass
    release.set()
    holder.join()
    for t in threads:
        t.join()
    # While both wait, they alternate: in the first 100 steps B gets about half (its 50), A the rest.
    assert 45 <= log[:100].count("B") <= 50


def test_uncontended_steps_do_not_wait_and_usage_decays() -> None:
    clock = _Clock()
    gate = FairStepGate(half_life_s=1.0, clock=clock, return_grace_s=0.5)
    with gate.turn("A"):
        clock.now += 1.0  # one step of a second
    assert abs(gate.usage("A") - 1.0) < 1e-9
    clock.now += 1.0
    assert abs(gate.usage("A") - 0.5) < 1e-9
    assert gate.usage("nobody") == 0.0
