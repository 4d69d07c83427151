"""Text steps take turns between keys in the engine's step gate, piece by piece (services/device/key_share.py
`TextTurns`): the hostile round's Markdown attack (a free `POST /v1/tts/normalize` of 40,000 `![` after another)
held the interpreter lock beside another key's engine steps and multiplied that key's first audio. A text piece
never runs beside a step, a heavier key's next piece waits for a lighter key's waiting step, the pieces' seconds are
the key's, a key's own text steps run one after another, and a step whose request is gone stops at its next piece."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from core.llm.step_gate import USAGE_HALF_LIFE_S, FairStepGate, OwnerUsage
from services.device.key_share import TextStepStopped, TextTurns
from services.pipeline.markup import plan_document, read_request_text
from shared.settings import Settings
from tests.codec_fakes import FakeClock

ATTACK_LINE = "![" * 20_000


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def _waiting(gate: FairStepGate, key: str) -> bool:
    return any(turn.owner == key for turn in gate._waiting)  # noqa: SLF001 - the gate's queue, read in a test


async def test_the_markdown_attack_s_pieces_never_run_beside_another_key_s_steps() -> None:
    gate = FairStepGate()
    turns = TextTurns(lambda: gate)
    spans: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    done = threading.Event()

    def b_steps() -> None:  # key B generating: one short step after another
        while not done.is_set():
            with gate.turn("B"):
                started = time.perf_counter()
                time.sleep(0.002)
                spans["B"].append((started, time.perf_counter()))

    def a_plan(pause: Callable[[], None]) -> str:
        mark = time.perf_counter()

        def timed_pause() -> None:
            nonlocal mark
            spans["A"].append((mark, time.perf_counter()))
            pause()
            mark = time.perf_counter()

        document = read_request_text(ATTACK_LINE, None)
        plan = plan_document(document, Settings(), normalize=True, chunking=True, pause=timed_pause)
        spans["A"].append((mark, time.perf_counter()))
        return plan.text

    stepper = threading.Thread(target=b_steps)
    stepper.start()
    try:
        text = await turns.run("A", a_plan)
    finally:
        done.set()
        stepper.join()
    assert text == ATTACK_LINE  # nothing lost: the line is spoken as written
    assert len(spans["A"]) > len(ATTACK_LINE) // 4_000  # planned in pieces
    assert spans["B"]
    for a_start, a_end in spans["A"]:
        assert not any(b_start < a_end and a_start < b_end for b_start, b_end in spans["B"])


async def test_a_heavier_key_s_next_piece_waits_for_a_lighter_key_s_step() -> None:
    gate = FairStepGate()
    gate.account.charge("A", 2.0)  # A planned text a moment ago
    turns = TextTurns(lambda: gate)
    log: list[str] = []
    b_waits = threading.Event()

    def a_plan(pause: Callable[[], None]) -> str:
        log.append("A piece 1")
        assert b_waits.wait(5)
        pause()
        log.append("A piece 2")
        return "planned"

    def b_step() -> None:
        with gate.turn("B"):
            log.append("B step")

    planning = asyncio.create_task(turns.run("A", a_plan))
    await _until(lambda: log == ["A piece 1"])
    stepper = threading.Thread(target=b_step)
    stepper.start()
    await _until(lambda: _waiting(gate, "B"))  # B asks while A's piece holds the gate
    b_waits.set()
    assert await planning == "planned"
    stepper.join()
    assert log == ["A piece 1", "B step", "A piece 2"]


async def test_a_text_step_waits_for_a_step_under_way_and_its_pieces_are_charged_to_its_key() -> None:
    clock = FakeClock()
    gate = FairStepGate(clock=clock, usage=OwnerUsage(clock=clock))
    turns = TextTurns(lambda: gate)
    log: list[str] = []
    release = threading.Event()

    def b_step() -> None:
        with gate.turn("B"):
            log.append("B step starts")
            assert release.wait(5)
            log.append("B step ends")

    def a_plan(pause: Callable[[], None]) -> str:
        log.append("A piece 1")
        clock.now += 0.3
        pause()
        clock.now += 0.2
        return "planned"

    stepper = threading.Thread(target=b_step)
    stepper.start()
    await _until(lambda: log == ["B step starts"])
    planning = asyncio.create_task(turns.run("A", a_plan))
    await _until(lambda: _waiting(gate, "A"))
    assert log == ["B step starts"]  # A's first piece waits for B's step
    release.set()
    assert await planning == "planned"
    stepper.join()
    assert log == ["B step starts", "B step ends", "A piece 1"]
    assert gate.usage("A") == pytest.approx(0.3 * 0.5 ** (0.2 / USAGE_HALF_LIFE_S) + 0.2)  # both pieces


async def test_a_key_s_own_text_steps_run_one_after_another_and_a_lone_key_never_waits() -> None:
    turns = TextTurns(lambda: None)  # no engine gate (a GPU engine): the text steps' own
    running: list[int] = []
    most = 0

    def plan(pause: Callable[[], None]) -> int:
        nonlocal most
        running.append(1)
        most = max(most, len(running))
        for _ in range(3):
            time.sleep(0.005)
            pause()
        running.pop()
        return 1

    assert sum(await asyncio.gather(*(turns.run("A", plan) for _ in range(4)))) == 4
    assert most == 1
    assert await turns.run("B", lambda pause: "alone") == "alone"


async def test_a_cancelled_text_step_stops_at_its_next_piece_before_the_key_s_next_step() -> None:
    turns = TextTurns(lambda: None)
    log: list[str] = []
    started = threading.Event()

    def long_plan(pause: Callable[[], None]) -> str:
        log.append("first piece")
        started.set()
        for piece in range(1_000):
            time.sleep(0.002)
            try:
                pause()
            except TextStepStopped:
                log.append(f"stopped after {piece + 1}")
                raise
        return "never"

    first = asyncio.create_task(turns.run("A", long_plan))
    await asyncio.to_thread(started.wait, 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert log[-1].startswith("stopped after")  # the thread ended before the task did
    assert await turns.run("A", lambda pause: "next") == "next"
