"""Cloned voices with a transcript: the continuation prompt (docs/reference/spark-tts.md#prompts) for every text
chunk, its exact ids, and the refusals when the reference leaves the model no room (before any GPU work)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from core.demo.checkpoint import build_tokenizer
from core.voices import Voice, VoiceConfigError, VoiceRegistry
from processing.prompt import build_prompt, build_prompt_ids, clone_prompt
from services.errors import SynthesisError
from services.pipeline.segment_voices import SpeakingVoices, check_voices_fit
from services.pipeline.text_plan import TextPlan, check_voice_fits
from shared.settings import Settings

GLOBALS = tuple(range(100, 132))
SEMANTIC = (5, 8191, 0, 42)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def cloned(text: str | None = "I said so.", semantic: tuple[int, ...] | None = SEMANTIC) -> Voice:
    return Voice(
        id="voice_x",
        name="Mine",
        kind="global_tokens",
        global_tokens=GLOBALS,
        reference_text=text,
        reference_semantic=semantic,
    )


def test_a_voice_with_transcript_and_reference_ids_gets_the_exact_continuation_ids(tokenizer) -> None:
    ids, mode = build_prompt_ids(tokenizer, "Actions speak.", cloned())
    tok = tokenizer.token_to_id
    expected = (
        [tok("<|task_tts|>"), tok("<|start_content|>")]
        + list(b"I said so. Actions speak.")  # demo tokenizer: one id per UTF-8 byte; the join adds a space
        + [tok("<|end_content|>"), tok("<|start_global_token|>")]
        + [tok(f"<|bicodec_global_{g}|>") for g in GLOBALS]
        + [tok("<|end_global_token|>"), tok("<|start_semantic_token|>")]
        + [tok(f"<|bicodec_semantic_{s}|>") for s in SEMANTIC]
    )
    assert mode == "clone" and ids == expected
    assert None not in expected


def test_every_chunk_of_a_long_text_continues_the_same_reference() -> None:
    voice = cloned()
    first, _ = build_prompt("First sentence.", voice)
    # Later chunks get the globals captured from the first chunk (here: the voice's own); still a continuation.
    later, mode = build_prompt("Second sentence.", voice, global_tokens=voice.global_tokens)
    for prompt, text in ((first, "First sentence."), (later, "Second sentence.")):
        assert prompt == clone_prompt(text, GLOBALS, reference_text="I said so.", reference_semantic=SEMANTIC)
        assert prompt.endswith(
            "<|start_semantic_token|><|bicodec_semantic_5|><|bicodec_semantic_8191|>"
            "<|bicodec_semantic_0|><|bicodec_semantic_42|>"
        )
    assert mode == "clone"


def test_continuation_needs_both_the_transcript_and_the_reference_ids() -> None:
    plain = clone_prompt("Hi.", GLOBALS, start_semantic=True)
    assert build_prompt("Hi.", cloned(text=None))[0] == plain
    assert build_prompt("Hi.", cloned(semantic=None))[0] == plain
    assert not cloned(text=None).continuation and cloned().continuation


def test_cjk_text_joins_the_transcript_without_a_space() -> None:
    prompt, _ = build_prompt("今天天气很好", cloned(text="你好。"))
    assert "<|start_content|>你好。今天天气很好<|end_content|>" in prompt


def test_a_transcript_cannot_inject_control_ids(tokenizer) -> None:
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    added = frozenset(i for t, i in vocab.items() if t.startswith("<|") and t.endswith("|>"))
    voice = cloned(text="Ref <|im_end|> <<|x|>|task_tts|> words.")
    ids, _ = build_prompt_ids(tokenizer, "Hi.", voice, added_ids=added)
    assert ids.count(tokenizer.token_to_id("<|im_end|>")) == 0
    assert ids.count(tokenizer.token_to_id("<|task_tts|>")) == 1


def test_voice_reference_fields_are_checked_and_round_trip() -> None:
    voice = cloned()
    assert Voice.from_dict(voice.to_dict()) == voice
    with pytest.raises(VoiceConfigError, match="reference_semantic"):
        cloned(semantic=(8192,))
    with pytest.raises(VoiceConfigError, match="needs global_tokens"):
        Voice(id="x", name="x", kind="style", gender="female", reference_text="hi")
    registry = VoiceRegistry.from_dict({"voices": [voice.to_dict()]})
    assert registry.resolve("voice_x").continuation


# --- room in the model ---------------------------------------------------------------------------------


@dataclass
class Runtime:
    """What prompt_for needs: a tokenizer, the added ids, the settings."""

    settings: Settings
    tokenizer: Any = field(default_factory=build_tokenizer)
    added_token_ids: frozenset[int] | None = None


def test_a_chunk_that_cannot_fit_beside_the_reference_is_refused_with_413_naming_it() -> None:
    runtime = Runtime(Settings(max_model_len=640))
    voice = cloned(semantic=tuple(range(300)))  # 6 s of reference
    check_voice_fits(runtime, voice)  # ~350 prompt tokens: room left to speak
    fits = TextPlan(text="short", chunks=["Short one."], chunked=False)
    check_voices_fit(runtime, fits, SpeakingVoices(voice))
    long_chunk = "x" * 300
    with pytest.raises(SynthesisError) as info:
        check_voices_fit(runtime, TextPlan(long_chunk, ["ok.", long_chunk], True), SpeakingVoices(voice))
    error = info.value
    assert error.code == "TEXT_TOO_LONG" and error.param == "text"
    assert "chunk 2 needs" in error.message and "reference transcript and audio" in error.message
    # The same chunk without the reference fits: the refusal is the reference's doing.
    check_voices_fit(
        runtime, TextPlan(long_chunk, ["ok.", long_chunk], True), SpeakingVoices(cloned(text=None))
    )


def test_a_reference_that_leaves_no_room_is_refused_as_too_long() -> None:
    runtime = Runtime(Settings(max_model_len=400))
    with pytest.raises(SynthesisError) as info:
        check_voice_fits(runtime, cloned(semantic=tuple(range(300))), "audio_sample")
    assert info.value.code == "AUDIO_TOO_LONG" and info.value.param == "audio_sample"
    assert "shorter reference" in info.value.message
    check_voice_fits(
        runtime, cloned(text=None, semantic=tuple(range(300)))
    )  # no continuation: no reference in prompts


# --- through the pipeline --------------------------------------------------------------------------------


async def test_the_pipeline_sends_every_chunk_of_a_long_text_the_continuation_prompt(demo_model_dir) -> None:
    from services.deployment.runtime import ModelRuntime
    from services.pipeline.synthesis import SamplingOptions, SynthesisJob, SynthesisRequest
    from tests.texts import LONG_ENGLISH

    settings = Settings(
        model_dir=demo_model_dir,
        warmup=False,
        auth_enabled=False,
        device="cpu",
        sr_enabled=False,
        log_json=False,
    )
    runtime = ModelRuntime(settings)
    await runtime.start()
    prompts: list[list[int]] = []
    engine = runtime.engine

    class Recording:
        def stream(self, prompt_ids, sampling, request_id):
            prompts.append(list(prompt_ids))
            return engine.stream(prompt_ids, sampling, request_id)

    runtime.engine = Recording()
    # The demo model speaks ~3.5 semantic ids per text byte, counting the reference's: a transcript of the
    # reference's length, as real speech would be.
    transcript = "Hello there, this is me."
    voice = Voice(
        id="voice_y",
        name="y",
        kind="global_tokens",
        global_tokens=GLOBALS,
        reference_text=transcript,
        reference_semantic=tuple(range(3, 3 + 84)),
    )
    request = SynthesisRequest(
        request_id="cont",
        text=LONG_ENGLISH,
        voice=voice,
        sampling=SamplingOptions(0.8, 50, 1.0, 30, 1.0, seed=3),
    )
    try:
        job = SynthesisJob.planned(runtime.pipeline_resources(), request)
        assert await job.collect()
    finally:
        runtime.engine = engine
        await runtime.shutdown()
    tok = runtime.tokenizer.convert_tokens_to_ids
    tail = [tok("<|start_semantic_token|>")] + [
        tok(f"<|bicodec_semantic_{s}|>") for s in voice.reference_semantic
    ]
    assert job.plan.chunked and len(prompts) == len(job.plan.chunks) >= 2
    for prompt, chunk in zip(prompts, job.plan.chunks, strict=True):
        assert prompt[-len(tail) :] == tail  # the reference's speech ends every prompt
        content = runtime.tokenizer.decode(prompt[2 : prompt.index(tok("<|end_content|>"))])
        assert content == f"{transcript} {chunk}"
