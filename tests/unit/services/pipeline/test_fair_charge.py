"""Fair charge: a cut chunk is charged for the characters its sent audio covers, and no request can make
more speech than TTS_MAX_AUDIO_S_PER_CHAR per character (+ the slack): past it the generation is cut, the request
completes, and it is charged for what it sent. In-process on the demo checkpoint with a misbehaving engine."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.guards.text_budget import expected_tokens
from services.deployment.runtime import ModelRuntime
from services.pipeline.chunk_guards import covered_chars, delivered_chars, speech_limit_tokens
from services.pipeline.synthesis import NATIVE_RATE, SamplingOptions, SynthesisJob, SynthesisRequest
from tests.demo_runtime import demo_runtime, misbehaving

HOP = 320  # 16 kHz samples per semantic token


@given(st.integers(0, 20_000), st.integers(1, 50_000), st.floats(0, 100_000), st.floats(0.01, 5))
def test_covered_characters_are_bounded_monotone_and_never_free(
    characters: int, expected: int, sent: float, limit: float
) -> None:
    covered = covered_chars(characters, expected, sent, limit)
    assert 0 <= covered <= characters
    assert covered_chars(characters, expected, sent + 50, limit) >= covered  # more audio never costs less
    if sent >= expected:
        assert covered == characters  # all the speech the text needs (or more) pays for all of it
    if characters and sent > 0:
        assert covered >= 1  # audio is never free
        assert covered >= min(characters, math.floor(sent / (limit * 50)))  # at least one per `limit` seconds


CHUNKS = st.lists(st.tuples(st.integers(1, 400), st.integers(1, 2_000), st.floats(0, 3_000)), max_size=8)


@given(CHUNKS, st.integers(0, 8), st.floats(0, 20_000), st.floats(0, 5_000))
def test_a_stream_ended_early_pays_for_the_audio_that_reached_the_socket(
    chunks: list[tuple[int, int, float]], finished: int, delivered: float, more: float
) -> None:
    """A stream the server ended (a stalled reader, a broken message rule): whole chunks the delivered audio spans,
    the chunk it stops in by the cut-chunk rule, nothing after it; more audio never costs less; audio is never free."""
    finished = min(finished, len(chunks))
    covered = delivered_chars(chunks, finished, delivered, 0.5)
    assert 0 <= covered <= sum(c for c, _, _ in chunks)
    assert delivered_chars(chunks, finished, delivered + more, 0.5) >= covered
    # Never beyond the chunk the delivered audio stops in.
    reached, left = 0, delivered
    for characters, _, made in chunks:
        reached += characters
        left -= made
        if left <= 0:
            break
    assert covered <= reached
    if 0 < delivered <= sum(m for _, _, m in chunks):
        assert covered >= 1  # audio that reached the socket is never free
    if delivered <= 0:
        assert covered == 0
    if finished == len(chunks) and delivered >= sum(m for _, _, m in chunks) + 1:
        assert covered == sum(c for c, _, m in chunks if m > 0)  # everything was heard: everything is paid


def test_a_stalled_utterance_pays_for_its_heard_chunks_not_its_whole_text() -> None:
    """The finding: a stalled, cut utterance was charged its full text (2,370 credits for 3.35 s of audio). Two
    chunks of 80 characters generated (4 s each), 3.35 s delivered, 28 more chunks never generated."""
    chunks = [(80, 200, 200.0), (80, 200, 120.0)] + [(80, 0, 0.0)] * 28
    covered = delivered_chars(chunks, 1, 3.35 * 50, 0.5)
    assert covered == math.ceil(80 * 3.35 * 50 / 200) == 67
    assert delivered_chars(chunks, 1, 5 * 50, 0.5) == 80 + math.ceil(80 * 50 / 200)


def test_a_one_word_ten_thousand_character_utterance_is_charged_in_full() -> None:
    """140 s of audio for a 10,001-character word gave back every character."""
    text = "a" * 10_001
    assert covered_chars(len(text), expected_tokens(text), 140 * 50, 0.5) == len(text)
    # Even were its estimate far above what it got, 140 s pays for at least 280 characters (0.5 s each).
    assert covered_chars(len(text), 10**9, 140 * 50, 0.5) >= 280


def test_the_speech_limit_grows_with_the_text() -> None:
    assert speech_limit_tokens(0, 0.5, 2.0) == 100
    assert speech_limit_tokens(100, 0.5, 2.0) == 2600


@pytest.fixture(scope="module")
def runtime(demo_model_dir: Path) -> Iterator[ModelRuntime]:
    with demo_runtime(demo_model_dir) as rt:
        yield rt


async def run(runtime: ModelRuntime, text: str, *, stream: bool) -> tuple[SynthesisJob, bytes]:
    job = SynthesisJob.planned(
        runtime.pipeline_resources(),
        SynthesisRequest(
            request_id="fair",
            text=text,
            voice=runtime.voices.resolve("fixed"),
            sampling=SamplingOptions(
                max_tokens=4000, seed=5, temperature=0.8, top_k=50, top_p=1.0, repetition_penalty=1.05
            ),
            sample_rate=NATIVE_RATE,
            stream=stream,
            latency="exact",
        ),
    )
    return job, await job.collect()


TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("mode", ["off", "act"])
async def test_a_generation_past_the_speech_limit_is_cut_and_the_request_completes(
    runtime: ModelRuntime, stream: bool, mode: str
) -> None:
    # 0.05 s per character: the 44 characters allow 2.2 s + 0.5 s, far below the runaway's own caps.
    with misbehaving(
        runtime, "runaway:0:0", guard_mode=mode, max_audio_s_per_char=0.05, max_audio_slack_s=0.5
    ):
        job, data = await run(runtime, TEXT, stream=stream)
    limit = speech_limit_tokens(len(TEXT), 0.05, 0.5)
    stats = job.stats
    assert job.error is None and data
    assert stats.guard_events == ["audio_limit:cut"] and stats.chunks_cut == 1 and stats.chunks_retried == 0
    assert stats.semantic_tokens == limit and stats.decoded_samples == limit * HOP == stats.output_samples
    # It sent the most speech its text allows: every character is charged.
    assert stats.chars_cut == 0


async def test_later_chunks_get_their_own_share_of_the_limit(runtime: ModelRuntime) -> None:
    text = " ".join([TEXT] * 12)  # several chunks
    with misbehaving(
        runtime, "runaway:0:0", guard_mode="off", max_audio_s_per_char=0.02, max_audio_slack_s=0.0
    ):
        job, _ = await run(runtime, text, stream=True)
    chunks = job.plan.chunks
    assert len(chunks) >= 2
    assert job.stats.chunks_cut == len(chunks) and job.stats.text_chunks_done == len(chunks)
    assert job.stats.semantic_tokens <= speech_limit_tokens(len("".join(chunks)), 0.02, 0.0)


async def test_a_streamed_chunk_cut_early_is_charged_for_what_it_sent(runtime: ModelRuntime) -> None:
    text = f"{TEXT} It was a sunny day, and everyone in the small town was happy to be outside."
    with misbehaving(runtime, "loop:40:0"):
        job, _ = await run(runtime, text, stream=True)
    run_ = job._runs[0]
    assert job.stats.guard_events == ["loop:cut"]
    sent_tokens = run_.decoded / HOP
    covered = covered_chars(len(run_.text), expected_tokens(run_.text), sent_tokens, 0.5)
    assert 0 < covered < len(run_.text)
    assert job.stats.chars_cut == len(run_.text) - covered


def test_a_clean_close_and_a_reset_after_the_same_audio_cost_the_same(runtime: ModelRuntime) -> None:
    """The same utterance cost 966 credits when the client closed the socket after hearing 1.43 s and 21 when it
    reset the connection: both pay for the audio that reached the socket now (the cut-chunk rule); an explicit
    cancel is still a hang-up, charged every character spoken."""
    import asyncio

    from services.sessions.utterance import Utterance
    from tests.texts import LONG_ENGLISH

    async def charge(reason: str) -> tuple[int, int]:
        request = SynthesisRequest(
            request_id=f"u-{reason}",
            text="",
            voice=runtime.voices.resolve("fixed"),
            sampling=SamplingOptions(0.8, 50, 1.0, 4096, 1.05, seed=1),
            sample_rate=NATIVE_RATE,
            stream=True,
        )
        u = Utterance(runtime.pipeline_resources(), request, max_text_chars=50_000)
        u.add_text(LONG_ENGLISH)
        u.flush()
        stats = u.job.stats
        stats.decoded_samples_per_chunk = [expected_tokens(c) * HOP for c in u.job.plan.chunks[:2]]
        stats.text_chunks_done = 1  # the first chunk generated, the second under way
        u.delivered_s = 1.43
        u.stop_reason = reason
        return u.billable_characters(), u.spoken_characters

    charges = {
        reason: asyncio.run(charge(reason)) for reason in ("disconnected", "ended_by_server", "cancelled")
    }
    spoken = charges["cancelled"][1]
    assert charges["disconnected"][0] == charges["ended_by_server"][0] < spoken // 4
    assert charges["disconnected"][0] > 0 and charges["cancelled"][0] == spoken
