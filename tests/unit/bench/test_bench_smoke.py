"""The service benchmark in-process: the paced engine keeps the LLM engine contract, the ideal-stream figures, and
the CPU-only benches. The benches that start servers run in tests/integration/test_bench_smoke_server.py."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bench.bench_service import ideal_underruns
from bench.paced_engine import PaceConfig, PacedEngine
from core.llm import LLMEngine, SamplingConfig
from core.tokens import TokenParser, VocabLayout
from processing.prompt import build_prompt_ids

TEXT = "Hello there, general."


@pytest.fixture(scope="module")
def tokenizer(demo_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(demo_model_dir / "LLM"))


@pytest.fixture(scope="module")
def layout(tokenizer) -> VocabLayout:
    return VocabLayout.from_tokenizer(tokenizer)


@pytest.fixture(scope="module")
def clone_voice(demo_model_dir: Path):
    from core.voices import VoiceRegistry

    return VoiceRegistry.from_file(demo_model_dir / "voices.json").resolve("fixed")


def _engine(tokenizer, layout, **pace) -> PacedEngine:
    return PacedEngine.from_tokenizer(
        tokenizer, layout, PaceConfig(**{"tokens_per_s": 1000.0, "tick_s": 0.0, **pace})
    )


async def _collect(
    engine: PacedEngine, prompt: list[int], sampling: SamplingConfig, rid: str
) -> list[list[int]]:
    return [delta async for delta in engine.stream(prompt, sampling, rid)]


def test_clone_prompt_gives_a_valid_paced_stream(tokenizer, layout, clone_voice) -> None:
    engine = _engine(tokenizer, layout)
    assert isinstance(engine, LLMEngine)
    prompt, mode = build_prompt_ids(tokenizer, TEXT, clone_voice, global_tokens=clone_voice.global_tokens)
    assert mode == "clone"
    deltas = asyncio.run(_collect(engine, prompt, SamplingConfig(), "r1"))
    ids = [i for d in deltas for i in d]
    assert all(deltas)  # no empty deltas
    assert ids[-1] == layout.im_end_id
    parser = TokenParser(layout, mode="clone")
    parser.feed(ids)
    result = parser.finish()
    assert len(result.semantic) == round(3.5 * engine.text_tokens(prompt)) == round(3.5 * len(TEXT.encode()))
    assert engine.active_requests() == set()
    (record,) = engine.drain_stats()
    assert record.finished and record.mode == "clone" and record.first_semantic_at_s is not None


def _voice(demo_model_dir: Path, voice_id: str):
    from core.voices import VoiceRegistry

    return VoiceRegistry.from_file(demo_model_dir / "voices.json").resolve(voice_id)


def test_controllable_prompt_starts_with_acoustic_values_then_32_globals(
    tokenizer, layout, demo_model_dir: Path
) -> None:
    from core.tokens import Acoustic, Marker, TokenKind

    prompt, mode = build_prompt_ids(tokenizer, TEXT, _voice(demo_model_dir, "default"))
    assert mode == "controllable"
    engine = _engine(tokenizer, layout)
    ids = [i for d in asyncio.run(_collect(engine, prompt, SamplingConfig(), "r")) for i in d]
    # As the trained model continues a controllable prompt: acoustic block, then the global block
    # (docs/reference/spark-tts.md#prompts).
    assert ids[0] == layout.marker_id(Marker.START_ACOUSTIC) and ids[3] == layout.marker_id(
        Marker.END_ACOUSTIC
    )
    assert [layout.kind(i) for i in ids[1:3]] == [TokenKind.ACOUSTIC, TokenKind.ACOUSTIC]
    assert [int(layout.acoustic[i]) for i in ids[1:3]] == [Acoustic.PITCH, Acoustic.SPEED]
    assert ids[4] == layout.marker_id(Marker.START_GLOBAL) and ids[38] == layout.marker_id(
        Marker.START_SEMANTIC
    )
    parser = TokenParser(layout, mode="controllable")
    delta = parser.feed(ids)
    assert delta.global_tokens is not None and len(delta.global_tokens) == 32
    assert parser.finish().semantic
    (record,) = engine.drain_stats()
    assert record.mode == "controllable" and record.first_semantic_due_s == pytest.approx(39 / 1000.0)


def test_speaker_prefix_prompt_continues_with_the_global_block(
    tokenizer, layout, demo_model_dir: Path
) -> None:
    from core.tokens import Marker, TokenKind

    prompt, mode = build_prompt_ids(tokenizer, TEXT, _voice(demo_model_dir, "narrator"))
    assert mode == "controllable" and prompt[-1] == layout.marker_id(Marker.START_GLOBAL)
    plan = _engine(tokenizer, layout).plan(prompt, SamplingConfig(), "r")
    assert (
        plan.mode == "speaker" and plan.first_semantic_index == 34
    )  # 32 globals, end-global, start-semantic
    assert all(layout.kind(i) == TokenKind.GLOBAL for i in plan.ids[:32])
    parser = TokenParser(layout, mode="controllable")
    assert parser.feed(plan.ids).global_tokens is not None and parser.finish().semantic


def test_max_tokens_caps_the_stream(tokenizer, layout, clone_voice) -> None:
    prompt, _ = build_prompt_ids(tokenizer, TEXT * 4, clone_voice, global_tokens=clone_voice.global_tokens)
    deltas = asyncio.run(_collect(_engine(tokenizer, layout), prompt, SamplingConfig(max_tokens=20), "r"))
    assert sum(len(d) for d in deltas) == 20


def test_stream_keeps_the_set_rate_and_can_be_aborted(tokenizer, layout, clone_voice) -> None:
    engine = _engine(tokenizer, layout, tokens_per_s=200.0, tick_s=0.02)
    prompt, _ = build_prompt_ids(tokenizer, "Hi there.", clone_voice, global_tokens=clone_voice.global_tokens)
    total = len(engine.plan(prompt, SamplingConfig(), "x").ids)

    async def timed() -> float:
        started = time.perf_counter()
        await _collect(engine, prompt, SamplingConfig(), "timed")
        return time.perf_counter() - started

    elapsed = asyncio.run(timed())
    assert (
        elapsed >= (total - 1) / 200.0 * 0.95
    )  # never faster than the set rate (generous upper bound below)
    assert elapsed < (total - 1) / 200.0 + 2.0

    async def aborted() -> int:
        got = 0
        stream = engine.stream(prompt, SamplingConfig(), "abort-me")
        async for delta in stream:
            got += len(delta)
            assert engine.active_requests() == {"abort-me"}
            with pytest.raises(ValueError):
                await anext(engine.stream(prompt, SamplingConfig(), "abort-me"))
            await engine.abort("abort-me")
        return got

    assert asyncio.run(aborted()) < total
    assert engine.active_requests() == set()


def test_ideal_service_underruns_only_when_the_engine_is_too_slow() -> None:
    cfg = {"stream_first_chunk_tokens": 25, "stream_max_chunk_tokens": 200, "stream_chunk_growth": 2.0,
           "stream_lookahead_tokens": 24}  # fmt: skip
    assert ideal_underruns(300, 0.01, 200.0, cfg, holdback_samples=0, prebuffer_s=0.0) == 0
    # 50 tokens/s is exactly real time: with look-ahead every later chunk arrives after the audio ran out.
    assert ideal_underruns(300, 0.02, 50.0, cfg, holdback_samples=0, prebuffer_s=0.0) > 0


@pytest.mark.parametrize("preference", ["balanced", "lowest"])
def test_a_zero_latency_service_keeps_the_short_schedule_flowing(preference: str) -> None:
    """At 100 tokens/s (2x real time) the chunk after the short schedule arrives in time now; before the chunk size
    restarted there it came ~200 ms after the audio ran out, whatever the service did."""
    from dataclasses import replace

    from bench.ideal_stream import EngineTiming, ideal_arrivals, ideal_first_audio_s, ideal_underruns
    from core.streaming import StreamingConfig

    schedule = StreamingConfig(growth=1.5).for_latency(preference)  # type: ignore[arg-type]
    timing = EngineTiming(semantic_tokens=220, first_due_s=0.0, tokens_per_s=100.0)
    assert ideal_first_audio_s(schedule, timing) == pytest.approx(
        (schedule.tokens_before_first_audio - 1) / 100
    )
    assert sum(seconds for _, seconds in ideal_arrivals(schedule, timing)) == pytest.approx(220 * 0.02)
    assert ideal_underruns(schedule, timing, prebuffer_s=0.0) == 0
    assert ideal_underruns(replace(schedule, resume_chunk_tokens=None), timing, prebuffer_s=0.1) == 1
    # A 50 ms crossfade hold-back on every chunk turns the on-time second chunk into an underrun.
    assert ideal_underruns(schedule, timing, prebuffer_s=0.0, holdback_samples=800) == 1


def test_bench_server_legacy_behaviours_apply_and_undo() -> None:
    from bench.serve_paced import Legacy
    from core.streaming import StreamingConfig
    from services.pipeline.audio_output import AudioOutput

    originals = (StreamingConfig.for_latency, AudioOutput.start_segment)
    legacy = Legacy()
    legacy.set(["resume", "holdback"])
    try:
        assert StreamingConfig().for_latency("balanced").resume_chunk_tokens is None
        assert legacy.active == ["holdback", "resume"]
        with pytest.raises(ValueError, match="unknown"):
            legacy.set(["nope"])
    finally:
        legacy.set([])
    assert (StreamingConfig.for_latency, AudioOutput.start_segment) == originals
    assert StreamingConfig().for_latency("balanced").resume_chunk_tokens == 25


def test_stream_interval_hands_out_the_first_id_at_once_then_groups(tokenizer, layout, clone_voice) -> None:
    """As vLLM's stream_interval: one id first, then deltas of N ids (the last may be short), every id once."""
    prompt, _ = build_prompt_ids(tokenizer, TEXT, clone_voice, global_tokens=clone_voice.global_tokens)
    plain = [
        i for d in asyncio.run(_collect(_engine(tokenizer, layout), prompt, SamplingConfig(), "p")) for i in d
    ]
    deltas = asyncio.run(
        _collect(_engine(tokenizer, layout, stream_interval=4), prompt, SamplingConfig(), "p")
    )
    assert [i for d in deltas for i in d] == plain
    assert len(deltas[0]) >= 1 and all(len(d) >= 4 for d in deltas[1:-1]) and deltas[-1]
    with pytest.raises(ValueError):
        PaceConfig(stream_interval=0)


def test_free_codec_answers_the_schedulers_padded_call_itself() -> None:
    """The codec scheduler calls decode_padded; a FreeCodec must not hand it to the model it wraps."""
    import torch

    from bench.ideal_stream import FreeCodec

    class Model:
        hop_length, semantic_codebook_size, d_vector_dim = 320, 8192, 4

        def decode_padded(self, *args: object) -> torch.Tensor:
            raise AssertionError("the real model was called")

        decode_rows = decode_padded

    out = FreeCodec(Model()).decode_padded(
        torch.zeros(2, 7, dtype=torch.long), torch.tensor([7, 5]), torch.zeros(2, 4)
    )
    assert out.shape == (2, 7 * 320)
    rows = torch.tensor([2, 0]), torch.tensor([5, 7]), torch.tensor([3, 3]), torch.zeros(2, 4)
    out = FreeCodec(Model()).decode_rows(torch.zeros(2, 7, dtype=torch.long), *rows, margin=2)
    assert out.shape == (2, 3 * 320)


def test_free_sr_answers_the_batched_call_itself_at_the_models_length() -> None:
    """The 48 kHz host path bench: AP-BWE's batched call with no compute (one noise buffer's slice per row), 3x the
    samples, the model's grid kept."""
    import torch

    from bench.ideal_stream import FreeSR

    class Model:
        grid, context = 80, 880

        def enhance_batch(self, *args: object) -> torch.Tensor:
            raise AssertionError("the real model was called")

    free = FreeSR(Model())
    out = free.enhance_batch(torch.arange(8, dtype=torch.float32).reshape(2, 4))
    assert out.shape == (2, 12) and torch.equal(out[0], out[1]) and (free.grid, free.context) == (80, 880)
    assert 0 < float(out.abs().max()) < 1  # quiet noise: the silence guard and the clip see ordinary audio
    longer = free.enhance_batch(torch.zeros(3, 40))
    assert longer.shape == (3, 120) and torch.equal(longer[0, :12], out[0])


def _two_ways_in_equal_calls(result: dict) -> bool:
    """bench_sr_submit: both ways ran and made the same calls (they differ in submitting only)."""
    rows = result["rows"]
    return [r["way"] for r in rows] == ["one task each", "together"] and rows[0]["windows_per_call"] == rows[
        1
    ]["windows_per_call"]


@pytest.mark.parametrize(
    ("bench", "args", "header", "check"),
    [
        (
            "bench_host_stages",
            ["--seconds", "2", "--repeat", "1", "--format", "pcm,wav", "--sr48"],
            "| stage (4 ids per delta) |",
            lambda r: (
                set(r["us_per_audio_s"])
                >= {
                    "parsing (TokenParser.feed)",
                    "audio chain + encoding, pcm",
                    "48 kHz: AP-BWE windows through the scheduler, chain + encoding, pcm",
                }
            ),
        ),
        (
            "bench_sr_submit",
            ["--streams", "4", "--chunks", "3", "--rounds", "1"],
            "| 0 |",
            _two_ways_in_equal_calls,
        ),
        # 48 kHz's first AP-BWE window waits for the second decode window, unless it is a lead window
        (
            "first_audio_48k",
            ["--rates", "100"],
            "| 48k, balanced | 100 | 28 (280) | 265 |",
            lambda r: [row["first_audio_token"] for row in r["rows"]] == [16, 28, 16, 20],
        ),
    ],
)
def test_cpu_only_benches_run(
    bench: str,
    args: list[str],
    header: str,
    check,
    tmp_path: Path,  # noqa: ANN001
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    out = tmp_path / "out.json"
    monkeypatch.setattr("sys.argv", [bench, *args, "--out", str(out)])
    assert importlib.import_module(f"bench.{bench}").main() == 0
    assert header in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert check(result), result
