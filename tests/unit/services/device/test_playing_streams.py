"""The streams a listener still plays (`CodecScheduler.playing_streams`) and the two readers that may multiply the
codec's cost by them instead of the open streams: admission's rule 3 and the first-chunk switch
(`Admission(codec_share_streams="playing")`). Fake clocks and hand-set figures; no timings."""

from __future__ import annotations

import pytest

from services.device import CodecScheduler, SchedulerPolicy
from services.device.admission import Admission
from services.device.codec_cost import CODEC_SHARE_STREAMS
from services.device.windows import FixedDeadline
from tests.codec_fakes import FakeClock, FiguresScheduler, RecordingRunner


class Heard(FixedDeadline):
    """A listener who plays the stream as it comes and runs out of audio at `at`."""

    started = True
    heard = True


def test_a_closed_stream_plays_until_its_listener_runs_out_of_audio() -> None:
    clock = FakeClock(100.0)
    sched = CodecScheduler(RecordingRunner(clock), SchedulerPolicy(), clock=clock)
    open_one = sched.open_stream(Heard(103.0))
    finished = sched.open_stream(Heard(102.0))
    unheard = sched.open_stream()  # nobody plays it as it comes: once closed, nothing of it plays
    assert (sched.active_streams, sched.playing_streams) == (3, 3)
    sched.close_stream(finished)
    sched.close_stream(unheard)
    assert (sched.active_streams, sched.playing_streams) == (1, 2)
    clock.now = 102.0  # its listener has heard the last of it
    assert sched.playing_streams == 1
    sched.close_stream(open_one)
    clock.now = 103.5
    assert (sched.active_streams, sched.playing_streams) == (0, 0)


class PlayingFigures(FiguresScheduler):
    def __init__(self, streams: int, playing: int) -> None:
        super().__init__(streams)
        self.playing_streams = playing


def _admission(sched: FiguresScheduler, share_streams: str) -> Admission:
    adm = Admission(
        sched,
        generating=lambda: sched.active_streams,
        codec_share_streams=share_streams,  # type: ignore[arg-type]  # checked by the constructor
        max_codec_share=0.5,
        ramp_floor=10**6,
        pace_margin=0.0,
    )
    # 6 s at 0.01 device seconds per stream-second of the 10 open streams
    for _ in range(60):
        sched.now += 0.1
        sched.stats.busy_seconds += 0.01
        sched.stats.kept_tokens += 50
        adm.note_tokens(50)  # each admission read integrates the figures up to now
    return adm


def test_rule_3_multiplies_by_the_streams_playing_where_asked() -> None:
    """10 streams open and 60 playing at 0.01 of the device each: one more open reads 0.11, one more playing 0.61,
    past the 0.5 cap."""
    assert CODEC_SHARE_STREAMS == ("open", "playing")
    by_open = _admission(PlayingFigures(streams=10, playing=60), "open")
    assert by_open.decide().admit
    assert by_open.view()["codec_share_streams"] == "open"
    by_playing = _admission(PlayingFigures(streams=10, playing=60), "playing")
    refused = by_playing.decide()
    assert (refused.admit, refused.rule) == (False, "codec_cost")
    assert "60 streams" in refused.reason
    assert by_playing.view()["codec_share_with_one_more"] == pytest.approx(0.61, rel=0.05)


def test_an_unknown_count_is_refused() -> None:
    with pytest.raises(ValueError, match="codec_share_streams"):
        Admission(FiguresScheduler(streams=1), codec_share_streams="queued")  # type: ignore[arg-type]


def test_closing_forgets_listeners_that_ran_out_even_when_nobody_reads_the_count() -> None:
    """The default rule 3 never reads `playing_streams`: each close still drops the listeners done playing, so the
    scheduler holds only those still playing, however many streams it served."""
    clock = FakeClock(100.0)
    sched = CodecScheduler(RecordingRunner(clock), SchedulerPolicy(), clock=clock)
    for i in range(1000):
        clock.now = 100.0 + i
        sched.close_stream(sched.open_stream(Heard(clock.now + 2.5)))
    assert len(sched._playing_until) == 3  # the last three listeners still play
    assert sched.playing_streams == 3
