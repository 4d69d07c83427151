"""Timestamps through the synthesis pipeline (demo checkpoint): timing never holds audio (the first audio goes out
while the aligner is still held up), every written word is covered once, times are monotonic and inside the audio,
the audio is the same as without timestamps, a failing aligner falls back without failing the request; and on a
simulated playback clock every word's span is sent before the word has finished playing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.align import split_words
from core.align.incremental import PRIOR_RATE, PRIOR_RATE_S, IncrementalEstimate
from core.align.rates import MEMORY_S, MeasuredRate, SpeakingRates
from core.align.units import expected_units, load_segmenter
from core.voices import Voice, voice_with_speed
from services.deployment.runtime import ModelRuntime
from services.pipeline import synthesis
from services.pipeline.synthesis import (
    NATIVE_RATE,
    SamplingOptions,
    SynthesisJob,
    SynthesisRequest,
    warmup_pipeline,
)
from services.pipeline.timestamps import TimestampsEvent, TimestampTrack
from tests.demo_runtime import demo_runtime
from tests.texts import LONG_ENGLISH

MAX_TOKENS = 40


@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path) -> Iterator[ModelRuntime]:
    with demo_runtime(demo_model_dir) as rt:
        yield rt


def _request(
    runtime: ModelRuntime,
    text: str,
    timestamps: str | None,
    *,
    normalize: bool = True,
    stream: bool = True,
    time_stretch: float = 1.0,
) -> SynthesisRequest:
    voice = runtime.voices.resolve(runtime.voices.default_voice_id)
    sampling = SamplingOptions(
        max_tokens=MAX_TOKENS, seed=3, temperature=0.8, top_k=50, top_p=1.0, repetition_penalty=1.05
    )
    return SynthesisRequest(
        request_id="ts",
        text=text,
        voice=voice,
        sampling=sampling,
        audio_format="pcm",
        sample_rate=NATIVE_RATE,
        stream=stream,
        latency="exact",
        normalize=normalize,
        timestamps=timestamps,
        time_stretch=time_stretch,
    )  # type: ignore[arg-type]


async def _run(job: SynthesisJob) -> tuple[bytes, list[tuple[float, TimestampsEvent]]]:
    audio = bytearray()
    events: list[tuple[float, TimestampsEvent]] = []
    async for item in job.stream_events():
        if isinstance(item, TimestampsEvent):
            events.append((len(audio) / 2 / NATIVE_RATE, item))  # seconds of audio already sent
        else:
            audio += item
    return bytes(audio), events


@pytest.mark.parametrize(
    ("text", "normalize", "stretch"),
    [
        ("I paid $5 on 15/03/2024, [excited] really!", True, 1.0),
        ("I paid $5 on 15/03/2024, really!", False, 1.0),
        (LONG_ENGLISH, True, 1.0),
        (LONG_ENGLISH, True, 1.6),  # speed: the chain time-stretches after the crossfade; times follow
    ],
    ids=["normalised", "raw", "long", "long-faster"],
)
async def test_words_cover_the_text_beside_unchanged_audio(
    runtime: ModelRuntime, text: str, normalize: bool, stretch: float
) -> None:
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        _request(runtime, text, "word", normalize=normalize, time_stretch=stretch),
    )
    audio, events = await _run(job)
    duration = len(audio) / 2 / NATIVE_RATE
    assert len(events) >= len(job.plan.chunks)
    words = [w for _, e in events for w in e.words]
    assert [w.text for w in words] == split_words(text)
    spoken = [w for _, e in events for w in e.normalized]
    assert len(spoken) >= len([w for w in words if not w.text.startswith("[")])
    for series in (words, spoken):
        times = [t for w in series for t in (w.start, w.end)]
        # With `speed` the stretched audio is the input's length / speed to a sample (audio/time_stretch.py), so the
        # spans, scaled by the same factor, end within a sample of it.
        slack = 1 / NATIVE_RATE if stretch != 1.0 else 1e-6
        assert times == sorted(times) and times[0] >= 0 and times[-1] <= duration + slack
    assert job.timestamps is not None and job.timestamps.status == "ok"
    # The same seed without timestamps: the same audio, no events.
    plain_audio, plain_events = await _run(
        SynthesisJob.planned(
            runtime.pipeline_resources(),
            _request(runtime, text, None, normalize=normalize, time_stretch=stretch),
        )
    )
    assert plain_events == [] and plain_audio == audio


async def test_first_audio_goes_out_while_the_aligner_is_held_up(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aligner blocks until the consumer has the first audio bytes: were audio waiting for timing, the two would
    wait for each other until the gate's timeout, and `released` would stay False."""
    first_audio = threading.Event()
    released: list[bool] = []
    feed = IncrementalEstimate.feed

    def slow_feed(self: IncrementalEstimate, audio: np.ndarray, *, settle: bool = True) -> list:
        released.append(first_audio.wait(timeout=30))
        return feed(self, audio, settle=settle)

    monkeypatch.setattr(IncrementalEstimate, "feed", slow_feed)
    job = SynthesisJob.planned(runtime.pipeline_resources(), _request(runtime, LONG_ENGLISH, "word"))
    order: list[str] = []
    async for item in job.stream_events():
        if isinstance(item, TimestampsEvent):
            order.append("timing")
        else:
            order.append("audio")
            first_audio.set()
    assert released and all(released), "the aligner ran before any audio had reached the consumer"
    assert order[0] == "audio" and "timing" in order


async def test_a_failing_aligner_falls_back_and_the_request_completes(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> list:
        raise IndexError("aligner bug")

    monkeypatch.setattr(IncrementalEstimate, "feed", broken)
    monkeypatch.setattr(IncrementalEstimate, "finish", broken)
    text = "I paid $5 on 15/03/2024, really!"
    job = SynthesisJob.planned(runtime.pipeline_resources(), _request(runtime, text, "word"))
    audio, events = await _run(job)
    assert audio and job.error is None
    words = [w for _, e in events for w in e.words]
    assert [w.text for w in words] == split_words(text)  # spread evenly, never missing
    assert job.timestamps is not None and job.timestamps.status == "fallback"
    assert any(reason.startswith("align: IndexError") for reason in job.timestamps.fallbacks)


def test_track_places_chunks_on_the_crossfaded_timeline() -> None:
    track = TimestampTrack(overlap_samples=800)
    track.add_text("One two. Three $4.", "One two. Three four dollars.")
    tone = (0.3 * np.sin(np.arange(16_000) / 5)).astype(np.float32)
    first = track.align_chunk(tone, "One two.")
    second = track.align_chunk(tone, "Three four dollars.")
    assert [w.text for w in first.words] == ["One", "two."]
    assert [w.text for w in second.words] == ["Three", "$4."]
    assert [w.text for w in second.normalized] == ["Three", "four", "dollars."]
    # The second chunk starts 50 ms before the first ends (the crossfade); times stay monotonic across the join.
    assert first.normalized[-1].end == 1.0 and second.normalized[0].start == 1.0
    assert second.normalized[-1].end == pytest.approx(2.0 - 800 / 16_000, abs=0.001)
    assert (
        second.words[1].start == second.normalized[1].start
        and second.words[1].end == second.normalized[2].end
    )
    assert second.words[-1].end <= 2.0 - 800 / 16_000 + 1e-6


def test_track_falls_back_from_a_failing_ctc_model_and_marks_it() -> None:
    class Broken:
        def align_batch(self, items: list) -> list:
            raise RuntimeError("CUDA error: device-side assert triggered")

    track = TimestampTrack(ctc={"*": Broken()})  # type: ignore[dict-item]
    track.add_text("One two three.", "One two three.")
    tone = (0.3 * np.sin(np.arange(16_000) / 5)).astype(np.float32)
    track.start_segment("One two three.")
    track.on_audio(tone)
    assert track.settle() is None  # ctc waits for the whole chunk; the audio went on meanwhile
    event = track.end_segment(end=1.0)
    assert event is not None and [w.text for w in event.words] == ["One", "two", "three."]
    assert event.words[-1].end <= 1.0 and track.status == "fallback"
    assert track.fallbacks == ["ctc: RuntimeError"]


def test_a_voices_measured_rate_starts_its_next_request() -> None:
    """The rate a finished chunk measured (all its words over its speech) is kept per voice and language, and the
    voice's next request starts its first chunk from it instead of the prior (still only a prior: the stream's own
    speech is searched and measured as with `PRIOR_RATE`); another voice or language does not."""
    rates = SpeakingRates()
    text = "One two three four five six seven eight nine ten."
    tone = (0.3 * np.sin(np.arange(48_000) / 5)).astype(np.float32)  # 3 s of speech, no pause
    first = TimestampTrack(rates=rates, voice="v")
    first.add_text(text, text)
    first.align_chunk(tone, text)
    measured = sum(expected_units(w) for w in split_words(text)) / 3.0
    remembered = rates.get(None, "v", "en")
    assert remembered is not None and remembered.rate == pytest.approx(measured, rel=0.02)
    assert remembered.seconds == pytest.approx(3.0, rel=0.02)  # the speech it was measured on
    assert rates.get(None, "v", "zh") is None and rates.get(None, "w", "en") is None
    later = TimestampTrack(rates=rates, voice="v")
    later.start_segment(text)
    assert later._segment is not None and later._segment.inc.rate == remembered.rate
    assert not later._segment.inc.measured  # a prior, not this stream's speaker
    other = TimestampTrack(rates=rates, voice="w")
    other.start_segment(text)
    assert other._segment is not None and other._segment.inc.rate == PRIOR_RATE
    other.start_segment(text, voice="v")  # a voice segment: that voice's rate
    assert other._segment is not None and other._segment.inc.rate == remembered.rate


@pytest.mark.parametrize("seconds", [2.0, 10.0, 30.0])
def test_a_voices_rate_weighs_as_the_speech_it_was_measured_on(seconds: float) -> None:
    """A stream that starts from a voice's remembered rate moves from it as a group of its own speech outweighs the
    speech the rate was measured on; the language-blind prior weighs PRIOR_RATE_S. One phrase's rate is a poorer
    guess of the next phrase's than a voice's rate measured on many."""
    words = "one two three four five six seven eight nine ten eleven twelve".split()
    prior = MeasuredRate(3.0, seconds)
    inc = IncrementalEstimate(words, prior=prior)
    inc._learn(12.0, 2.0)  # a group of 12 units in 2 s: 6 units a second
    assert inc.rate == pytest.approx((3.0 * seconds + 12.0) / (seconds + 2.0))
    blind = IncrementalEstimate(words)
    blind._learn(12.0, 2.0)
    assert blind.rate == pytest.approx((PRIOR_RATE * PRIOR_RATE_S + 12.0) / (PRIOR_RATE_S + 2.0))


def test_a_voice_asked_to_speak_faster_is_remembered_apart() -> None:
    """The speed label sets a style voice's pace: its rate is kept apart from the same voice at its own pace."""
    voice = Voice(id="calm", name="Calm", kind="style", gender="female")
    faster = voice_with_speed(voice, 1.5)
    assert voice.rate_key == "calm" and faster.rate_key == "calm@high"
    assert voice_with_speed(voice, 1.0).rate_key == voice.rate_key


def test_a_voices_measured_rate_is_kept_per_key() -> None:
    """Key A's speech with a voice (a reference voice's id is its recording's hash) never starts key B's stream:
    B's timestamps must not show whether A used that recording."""
    rates = SpeakingRates()
    text = "One two three four five six seven eight nine ten."
    tone = (0.3 * np.sin(np.arange(48_000) / 5)).astype(np.float32)
    a = TimestampTrack(rates=rates, voice="ref_0123456789abcdef", owner="key-a")
    a.add_text(text, text)
    a.align_chunk(tone, text)
    assert rates.get("key-a", "ref_0123456789abcdef", "en") is not None
    b = TimestampTrack(rates=rates, voice="ref_0123456789abcdef", owner="key-b")
    b.start_segment(text)
    assert b._segment is not None and b._segment.inc.rate == PRIOR_RATE


def test_speaking_rates_blend_by_speech_and_stay_bounded() -> None:
    rates = SpeakingRates(capacity=2)
    rates.observe(None, "v", "en", 4.0, 10.0)
    rates.observe(None, "v", "en", 6.0, 10.0)
    assert rates.get(None, "v", "en") == MeasuredRate(5.0, 20.0)
    rates.observe(None, "v", "en", float("nan"), 5.0)  # nothing measured: ignored
    rates.observe(None, "v", "en", 5.0, 0.0)
    assert rates.get(None, "v", "en") == MeasuredRate(5.0, 20.0)
    rates.observe(None, "v", "en", 5.0, 40.0)
    assert rates.get(None, "v", "en") == MeasuredRate(5.0, MEMORY_S)  # weighs at most MEMORY_S
    rates.observe(None, "w", "en", 3.0, 1.0)
    rates.get(None, "v", "en")  # used: kept
    rates.observe(None, "x", "en", 3.0, 1.0)
    assert rates.get(None, "w", "en") is None and rates.get(None, "v", "en") is not None


@pytest.mark.parametrize(
    ("text", "language"),
    [("One two three four five six seven eight nine ten.", "en"), ("我们去公园散步然后一起吃午饭。", "zh")],
)
def test_tracks_on_many_threads_sharing_one_rate_memory_align_as_each_does_alone(
    text: str, language: str
) -> None:
    """The rate memory and, for Chinese, the word segmenter (units.load_segmenter) are what the service's timestamp
    tracks share: tracks aligning at once on many threads (keys of their own, so each starts from the prior) give what
    one gives alone, and each key's rate is remembered."""
    tone = (0.3 * np.sin(np.arange(48_000) / 5)).astype(np.float32)

    def align(rates: SpeakingRates, owner: str) -> tuple[object, ...]:
        track = TimestampTrack(rates=rates, voice="v", owner=owner)
        track.add_text(text, text)
        return track.align_chunk(tone, text).words

    solo = align(SpeakingRates(), "solo")
    shared = SpeakingRates()
    results: dict[int, tuple[object, ...]] = {}

    def run(i: int) -> None:
        for _ in range(5):
            results[i] = align(shared, f"key-{i}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(words == solo for words in results.values()) and len(results) == 8
    assert all(shared.get(f"key-{i}", "v", language) is not None for i in range(8))


def test_the_warm_up_loads_the_chinese_segmenter_off_the_event_loop(
    runtime: ModelRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's first text chunk starts its timestamp track on the event loop: the Chinese word segmenter's
    dictionary (units.load_segmenter, ~60 ms) is loaded by the server's warm-up, in a worker thread, not there."""
    loaded_on: list[threading.Thread] = []

    def load() -> object:
        loaded_on.append(threading.current_thread())
        return load_segmenter()

    monkeypatch.setattr(synthesis, "load_segmenter", load)

    async def warm() -> threading.Thread:
        await warmup_pipeline(runtime.pipeline_resources())
        return threading.current_thread()

    loop_thread = asyncio.run(warm())
    assert len(loaded_on) == 1 and loaded_on[0] is not loop_thread
