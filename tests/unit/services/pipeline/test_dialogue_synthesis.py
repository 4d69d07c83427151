"""A two-voice dialogue through the speech service and the synthesis pipeline (demo checkpoint, whose voices' global
tokens the model generates; its style voices differ only by
their labels, which its random weights ignore, so the second speaker is its prompt-prefix voice): each speaker's first chunk fixes its global tokens for all its later chunks, the two
speakers differ, the chunks join with the usual crossfade (no gap), and timestamps run in order across segments."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.align import split_words
from processing.voice_segments import strip_voice_markers
from services.deployment.runtime import ModelRuntime
from services.pipeline.speech import SpeechRequest, SpeechService
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions
from services.pipeline.timestamps import TimestampsEvent
from tests.demo_runtime import demo_runtime

DIALOGUE = (
    "[voice:narrator] Did you hear the news today? [voice:default] No, what happened? "
    "[voice:narrator] The bridge is finally open. [voice:default] That is wonderful news!"
)


@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path) -> Iterator[ModelRuntime]:
    with demo_runtime(demo_model_dir) as rt:
        yield rt


def _speech(text: str, **fields: object) -> SpeechRequest:
    sampling = SamplingOptions(
        max_tokens=40, seed=5, temperature=0.8, top_k=50, top_p=1.0, repetition_penalty=1.05
    )
    speech = SpeechRequest(
        text=text, voice="default", audio_format="pcm", sample_rate=NATIVE_RATE, sampling=sampling
    )
    return replace(speech, **fields)  # type: ignore[arg-type]


async def test_each_speaker_keeps_its_global_tokens_and_the_two_differ(runtime: ModelRuntime) -> None:
    service = SpeechService(runtime, runtime.settings)
    opened = await service.open(_speech(DIALOGUE, timestamps="word"), request_id="dialogue")
    job = opened.job
    assert job.plan.chunk_voices == ("narrator", "default", "narrator", "default")
    # The request's own voice first speaks in chunk 1: it waits for nobody's global tokens (no deadlock).
    audio = bytearray()
    events: list[TimestampsEvent] = []
    async for item in job.stream_events():
        if isinstance(item, TimestampsEvent):
            events.append(item)
        else:
            if not audio:  # a stream's first audio comes with the first segment's first chunk
                assert job.stats.text_chunks_done == 0
            audio += item
    stats = job.stats
    narrator_a, default_a, narrator_b, default_b = stats.global_tokens_per_chunk
    assert narrator_a == narrator_b and default_a == default_b and narrator_a != default_a
    assert job.global_tokens == default_a  # what continuity remembers: the request's own voice
    assert job.speaker_of(0).voice.id == "narrator" and job.speaker_of(1).voice is opened.voice
    # Joined as any chunked text: one crossfade per join, no gap.
    overlap = round(runtime.settings.text.crossfade_ms * NATIVE_RATE / 1000)
    assert stats.output_samples == sum(stats.decoded_samples_per_chunk) - overlap * 3
    assert len(audio) == 2 * stats.output_samples
    # Timestamps: the words as written (markers left out), in order across the four segments.
    words = [w for e in events for w in e.words]
    assert [w.text for w in words] == split_words(strip_voice_markers(DIALOGUE))
    times = [t for w in words for t in (w.start, w.end)]
    assert times == sorted(times) and times[-1] <= stats.output_samples / NATIVE_RATE + 1e-6


async def test_a_marker_naming_the_requests_voice_is_one_speaker_with_the_unmarked_text(
    runtime: ModelRuntime,
) -> None:
    """A marker naming the request's own voice (or an alias of it) continues that voice: same global tokens."""
    service = SpeechService(runtime, runtime.settings)
    opened = await service.open(
        _speech("Hello there. [voice:narrator] Hi. [voice:alloy] How are you?"), request_id="own-voice"
    )
    await opened.job.collect()
    first, narrator, again = opened.job.stats.global_tokens_per_chunk
    assert first == again != narrator


async def test_text_without_markers_plans_and_runs_as_before(runtime: ModelRuntime) -> None:
    service = SpeechService(runtime, runtime.settings)
    opened = await service.open(_speech("Plain text, one voice."), request_id="plain")
    assert opened.plan.chunk_voices == () and opened.job.request.segment_voices == {}
    await opened.job.collect()
    assert len(opened.job.stats.global_tokens_per_chunk) == 1
