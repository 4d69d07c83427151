"""Admission's codec cost per stream (rule 3) of every live stream or of the settled ones (`codec_cost_streams`,
services/device/codec_cost.py): in a burst most streams are in their dear first second, and the cost of the settled
ones is what every stream costs once they settle. Simulated clock, hand-set figures; no timings."""

from __future__ import annotations

import pytest

from services.device.admission import Admission
from services.device.codec_cost import CODEC_COST_STREAMS
from tests.codec_fakes import FiguresScheduler


def _load(
    sched: FiguresScheduler, admissions: list[Admission], seconds: float, every: float, settled: float
) -> None:
    """`seconds` of the open streams costing the codec `every` of the device, `settled` of it on settled streams' rows."""
    for _ in range(round(seconds * 10)):
        sched.now += 0.1
        sched.stats.busy_seconds += every / 10
        sched.stats.settled_seconds += settled / 10
        for adm in admissions:
            adm.note_tokens(1)


def _pair(sched: FiguresScheduler, **kwargs: float) -> tuple[Admission, Admission]:
    def make(streams: str) -> Admission:
        return Admission(sched, codec_cost_streams=streams, ramp_floor=10**6, **kwargs)  # type: ignore[arg-type]

    return make("every"), make("settled")


def test_the_settled_cost_is_their_rows_seconds_over_their_own_stream_seconds() -> None:
    sched = FiguresScheduler(streams=10)
    sched.settled_streams = 4
    every, settled = _pair(sched)
    assert Admission(sched).codec.streams == "every"  # the default
    _load(sched, [every, settled], 6.0, every=0.5, settled=0.1)
    assert every.codec_cost() == pytest.approx(0.5 / 10, rel=0.05)
    assert settled.codec_cost() == pytest.approx(0.1 / 4, rel=0.05)
    assert settled.view()["codec_cost_streams"] == "settled"


def test_in_a_burst_the_settled_cost_admits_what_every_streams_first_second_refuses() -> None:
    """40 streams, 30 of them new: the codec busy 0.9 of the device, 0.1 on the 10 settled streams' rows. Every
    stream's cost projects one more to 0.92 of the device, past a cap of 0.8; once all settle they hold 0.41."""
    sched = FiguresScheduler(streams=40)
    sched.settled_streams = 10
    every, settled = _pair(sched, max_codec_share=0.8)
    _load(sched, [every, settled], 6.0, every=0.9, settled=0.1)
    refused = every.decide()
    assert not refused.admit and refused.rule == "codec_cost"
    assert settled.decide().admit


def test_until_the_settled_streams_give_a_sample_it_reads_every_stream() -> None:
    """From idle nothing has settled yet: the cost is every stream's, not none at all (with none, rule 3 went unread
    while a start at three times the device's load ran four 48 kHz streams dry: bench.sim.overload)."""
    sched = FiguresScheduler(streams=10)
    every, settled = _pair(sched)
    _load(sched, [every, settled], 6.0, every=0.5, settled=0.0)
    assert settled.codec_cost() == every.codec_cost() == pytest.approx(0.05, rel=0.05)
    sched.settled_streams = 2
    _load(
        sched, [every, settled], 2.0, every=0.5, settled=0.04
    )  # 4 settled stream-seconds: under the 5 s sample
    assert settled.codec_cost() == pytest.approx(every.codec_cost())
    _load(sched, [every, settled], 1.0, every=0.5, settled=0.04)
    assert settled.codec_cost() == pytest.approx(0.04 / 2, rel=0.05)


def test_an_unknown_choice_of_streams_is_refused() -> None:
    assert CODEC_COST_STREAMS == ("every", "settled")
    with pytest.raises(ValueError, match="codec_cost_streams"):
        Admission(FiguresScheduler(streams=1), codec_cost_streams="new")  # type: ignore[arg-type]
