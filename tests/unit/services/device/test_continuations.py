"""A refusal never cuts a reply: a lone stream's near misses are not read as overload, and a key's next sentence
(a new stream soon after one of its streams closed, or while that one still plays) continues it, once per closed
stream, for that key only, within the window. The scheduler runs on a fake clock that only its runner moves."""

from __future__ import annotations

from services.device import CodecScheduler, SchedulerPolicy
from services.device.continuations import Continuations
from services.device.playback import PlaybackClock
from tests.codec_fakes import FakeClock, RecordingRunner, played, window


def make(cost: float = 0.05) -> tuple[CodecScheduler, FakeClock]:
    clock = FakeClock()
    return CodecScheduler(RecordingRunner(clock, cost), SchedulerPolicy(), clock=clock), clock


async def test_a_lone_streams_near_miss_is_not_read_but_a_real_miss_is() -> None:
    sched, clock = make(cost=0.05)
    async with sched:
        lone, playback = played(sched)
        playback.note_audio(1.0)
        await lone.decode(window(60))  # settled from here on
        clock.now = playback.deadline() - 0.08
        await lone.decode(window(16))  # ends with 30 ms left: a near miss, but it is the only stream
        assert sched.recent_misses(-0.05) == 0 and sched.stats.near_misses_lone == 1
        clock.now = playback.deadline() + 0.1
        await lone.decode(window(16))  # ran dry: a miss, alone or not
    assert sched.recent_misses(-0.05) == 1


def _closed(sched: CodecScheduler, clock: FakeClock, owner: str, audio_s: float = 0.0) -> None:
    playback = PlaybackClock(clock.now, clock=clock)
    handle = sched.open_stream(playback, owner=owner)
    if audio_s:
        playback.start_playback(clock.now)
        playback.note_audio(audio_s)
    handle.close()


def test_each_closed_stream_is_continued_once_by_its_own_key_within_the_window() -> None:
    sched, clock = make()
    continuations = Continuations(clock, window_s=2.0)
    sched.on_live_close = continuations.note_closed
    _closed(sched, clock, "a")
    assert not continuations.take("b")  # another key's stream is not a continuation
    assert continuations.take("a") and not continuations.take("a")  # one per closed stream
    _closed(sched, clock, "a")
    clock.now += 2.5
    assert not continuations.take("a")  # past the window
    assert continuations.taken == 1


def test_a_stream_still_playing_can_be_continued_until_its_audio_ends() -> None:
    sched, clock = make()
    continuations = Continuations(clock, window_s=2.0)
    sched.on_live_close = continuations.note_closed
    _closed(sched, clock, "a", audio_s=13.0)  # read whole at the device's speed: 13 s still to play
    clock.now += 14.0
    assert continuations.waiting() == 1 and continuations.take("a")
    _closed(sched, clock, "a", audio_s=13.0)
    clock.now += 15.5
    assert not continuations.take("a")


def test_background_streams_leave_nothing_and_zero_turns_it_off() -> None:
    sched, clock = make()
    continuations = Continuations(clock, window_s=2.0)
    sched.on_live_close = continuations.note_closed
    sched.open_stream(owner="a", work_class="background").close()
    assert not continuations.take("a")
    off = Continuations(clock, window_s=0.0)
    sched.on_live_close = off.note_closed
    _closed(sched, clock, "a")
    assert not off.take("a")
