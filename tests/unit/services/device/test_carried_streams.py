"""Admission's rule 0: below what the GPU is known to carry (services/device/carried.py), a newcomer is admitted on the
count alone, where the measures (here the ramp) would hold it; above it, or arriving faster than the figure did, the
rules decide; a missed deadline refuses inside it too. 48 kHz streams weigh more than 16 kHz ones. On a plain clock
the tests move by hand: counts and order, no timings."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.device.admission import Admission
from services.device.carried import (
    KNOWN_CARRIED,
    RECENT_WINDOWS,
    CarriedFloor,
    CarriedStreams,
    carried_for,
    known_carried,
)
from services.device.scheduler import CodecScheduler
from services.device.telemetry import SchedulerStats
from shared.settings.model import CodecSettings, parse_carried


def model_path(name: str) -> Path:
    return Path(__file__).resolve().parents[4] / "bench" / "cost_models" / name


FIGURE = CarriedStreams(plain=10, super_resolved=5, within_s=5.0)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Scheduler:
    """What Admission reads, with live streams of each kind set by the test."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.plain = 0
        self.resolved = 0
        self.misses = 0
        self.stats = SchedulerStats()

    @property
    def active_streams(self) -> int:
        return self.plain + self.resolved

    def live_streams_by_kind(self) -> tuple[int, int]:
        return self.plain, self.resolved

    def busy_ratio(self) -> float:
        return 0.0

    def recent_misses(self, grace_s: float = 0.0) -> int:
        return self.misses

    def worst_recent_miss(self, grace_s: float = 0.0) -> float | None:
        return None


def _admission(carried: CarriedStreams | None = FIGURE) -> tuple[Admission, _Scheduler, _Clock]:
    clock = _Clock()
    scheduler = _Scheduler(clock)
    # a ramp of 2 a second: without rule 0 the third newcomer within a second is held
    return Admission(scheduler, clock=clock, ramp_floor=2, carried=carried), scheduler, clock


def _open(scheduler: _Scheduler, super_resolved: bool) -> None:
    if super_resolved:
        scheduler.resolved += 1
    else:
        scheduler.plain += 1


def test_below_the_carried_count_newcomers_pass_the_ramp_that_holds_them_without_it() -> None:
    for carried, admitted in ((None, 2), (FIGURE, 10)):
        adm, scheduler, clock = _admission(carried)
        answers = []
        for _ in range(12):
            decision = adm.decide(super_resolved=False)
            answers.append(decision.admit)
            if decision.admit:
                _open(scheduler, False)
            clock.now += 0.01
        assert sum(answers) == admitted, carried
    # the eleventh plain stream is past the figure: the ramp rules again
    assert adm.refused == {"ramp": 2}


def test_a_48k_stream_weighs_more_and_the_kinds_add_up() -> None:
    adm, scheduler, clock = _admission()
    kinds = [True, True, True, False, False, False, False, True]  # 3/5 + 4/10 = 1.0: full before the last
    answers = []
    for super_resolved in kinds:
        decision = adm.decide(super_resolved=super_resolved)
        answers.append(decision.admit)
        if decision.admit:
            _open(scheduler, super_resolved)
        clock.now += 0.01
    assert answers[:7] == [True] * 7 and answers[7] is False
    assert adm.view()["carried_load"] == pytest.approx(1.0)


def test_no_faster_than_the_figure_arrived_even_when_streams_end_at_once() -> None:
    """Streams that end as fast as they come leave the live count low: the figure's window still counts arrivals."""
    adm, _, clock = _admission(CarriedStreams(plain=4, super_resolved=2, within_s=5.0))
    answers = []
    for _ in range(6):  # nothing stays open
        answers.append(adm.decide(super_resolved=False).admit)
        clock.now += 0.01
    assert answers == [True, True, True, True, False, False]  # the ramp holds past 4 within 5 s


def test_the_count_admits_again_once_its_cohort_is_out_of_twice_its_window() -> None:
    """A cohort admitted on the count ends together; refilling the room it leaves is the measures' to judge until the
    cohort is two of the figure's windows old (RECENT_WINDOWS)."""
    clock = _Clock()
    floor = CarriedFloor(CarriedStreams(plain=4, super_resolved=2, within_s=5.0), clock)
    for _ in range(4):
        assert floor.fits(0, 0, False)
        floor.note_admitted(False)
    assert not floor.fits(0, 0, False)  # every one of them ended at once: still counted
    clock.now += 5.0 * RECENT_WINDOWS - 0.01
    assert not floor.fits(0, 0, False)
    clock.now += 0.02
    assert floor.fits(0, 0, False)


def test_a_missed_deadline_refuses_inside_the_carried_count() -> None:
    adm, scheduler, _ = _admission()
    scheduler.misses = 1
    decision = adm.decide(super_resolved=False)
    assert not decision.admit and decision.rule == "misses"


def test_unknown_kind_counts_as_the_heavier() -> None:
    adm, scheduler, clock = _admission()
    answers = []
    for _ in range(7):
        decision = adm.decide()  # super_resolved unknown: True
        answers.append(decision.admit)
        if decision.admit:
            _open(scheduler, True)
        clock.now += 0.01
    assert sum(answers[:5]) == 5 and scheduler.resolved <= 6


def test_the_scheduler_counts_live_streams_by_kind() -> None:
    scheduler = CodecScheduler(runner=None)  # type: ignore[arg-type]  # counting only, never started
    scheduler.open_stream(super_resolved=True)
    plain = scheduler.open_stream()
    scheduler.open_stream(work_class="background", super_resolved=True)
    assert scheduler.live_streams_by_kind() == (1, 1)
    plain.close()
    assert scheduler.live_streams_by_kind() == (0, 1)


def test_the_figure_is_known_per_gpu_and_device() -> None:
    assert known_carried("NVIDIA H200", "overlapped") == CarriedStreams(250, 200, 5.0)
    assert known_carried("NVIDIA H200", "sliced") is None  # two contexts run the 48 kHz burst dry
    assert known_carried("NVIDIA H100 80GB HBM3", "overlapped") is None
    assert carried_for("auto", None, "overlapped") is None  # not a GPU
    assert carried_for("off", "NVIDIA H200", "overlapped") is None
    assert carried_for("120,100,4", None, "serial") == CarriedStreams(120, 100, 4.0)


@pytest.mark.parametrize("value", ["250", "250,200", "0,200,5", "250,200,0", "a,b,c", "250,200,5,1"])
def test_a_malformed_setting_is_refused_where_settings_are_read(value: str) -> None:
    with pytest.raises(ValueError):
        parse_carried(value)
    with pytest.raises(ValueError, match="admission_carried"):
        CodecSettings(admission_carried=value)


def test_a_figure_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        CarriedStreams(plain=0, super_resolved=5, within_s=5.0)


def test_the_simulator_reads_the_figure_for_the_gpu_its_cost_model_names() -> None:
    """bench/sim gives admission what the service would read on that GPU: the H200 model's name finds its figure."""
    from bench.standin.cost_model import CostModel

    model = CostModel.load(model_path("h200-graphs-vllm-step-sr-tf32.json"))
    assert known_carried(model.name, "overlapped") == KNOWN_CARRIED[("H200", "overlapped")]
    assert known_carried(CostModel.load(model_path("h100-tf32.json")).name, "overlapped") is None


def test_only_a_burst_onto_a_lightly_loaded_device_is_admitted_on_the_count() -> None:
    """Streams admitted before the figure's window are what the measures read well: past half the figure of them, a
    count that refilled whatever the measures leave would admit bursts onto a device they call full."""
    clock = _Clock()
    floor = CarriedFloor(FIGURE, clock)
    assert floor.fits(5, 0, False)  # half the figure settled: a burst on top still fits
    assert not floor.fits(6, 0, False)
    for _ in range(3):  # three of the six live ones just admitted: three settled
        floor.note_admitted(False)
    assert floor.fits(6, 0, False)
    clock.now += FIGURE.within_s * RECENT_WINDOWS  # the window passes: all six are settled now
    assert not floor.fits(6, 0, False)
