"""Prompt strings (docs/reference/spark-tts.md#prompts), their token ids, and the voices registry."""

from __future__ import annotations

import json

import pytest

from core import tokens as core_tokens
from core.demo.checkpoint import build_tokenizer, demo_voices
from core.voices import BUILTIN_VOICES, UnknownVoiceError, Voice, VoiceConfigError, VoiceRegistry
from processing import prompt as P
from processing.prompt import (
    PromptError,
    SpeakerPrefix,
    StyleLabels,
    clone_prompt,
    controllable_prompt,
    encode_prompt,
    join_reference_text,
    speaker_prompt,
)

GLOBALS = list(range(100, 132))
GLOBALS_STR = "".join(f"<|bicodec_global_{g}|>" for g in GLOBALS)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


# --- prompt strings -------------------------------------------------------------------------------------


def test_controllable_prompt_is_the_spec_example():
    got = controllable_prompt("Hello world.", StyleLabels(gender="male", pitch="moderate", speed="moderate"))
    assert got == (
        "<|task_controllable_tts|><|start_content|>Hello world.<|end_content|><|start_style_label|>"
        "<|gender_1|><|pitch_label_2|><|speed_label_2|><|end_style_label|>"
    )


def test_controllable_labels_map_to_level_numbers():
    got = controllable_prompt("x", StyleLabels(gender="female", pitch="very_low", speed="very_high"))
    assert "<|gender_0|><|pitch_label_0|><|speed_label_4|>" in got


def test_clone_prompt_without_transcript_is_spec_b():
    assert clone_prompt("Good morning.", GLOBALS) == (
        f"<|task_tts|><|start_content|>Good morning.<|end_content|><|start_global_token|>{GLOBALS_STR}"
        "<|end_global_token|>"
    )
    assert clone_prompt("Hi", GLOBALS, start_semantic=True).endswith(
        "<|end_global_token|><|start_semantic_token|>"
    )


def test_clone_prompt_with_transcript_is_spec_c_with_a_space():
    got = clone_prompt("Actions speak.", GLOBALS, reference_text="I said so.", reference_semantic=[5, 8191])
    assert got == (
        f"<|task_tts|><|start_content|>I said so. Actions speak.<|end_content|><|start_global_token|>{GLOBALS_STR}"
        "<|end_global_token|><|start_semantic_token|><|bicodec_semantic_5|><|bicodec_semantic_8191|>"
    )


def test_reference_join_adds_no_space_before_cjk_or_existing_space():
    assert join_reference_text("你好。", "今天天气很好") == "你好。今天天气很好"
    assert join_reference_text("Hello. ", "World") == "Hello. World"
    assert join_reference_text("Hello.", "World") == "Hello. World"


def test_clone_style_labels_only_when_not_moderate():
    assert "<|start_style_label|>" not in clone_prompt("x", GLOBALS, style=StyleLabels(gender=None))
    got = clone_prompt("x", GLOBALS, style=StyleLabels(gender="male", pitch="high", speed="moderate"))
    assert "<|end_content|><|start_style_label|><|pitch_label_3|><|speed_label_2|><|end_style_label|>" in got
    assert "<|gender_" not in got


def test_speaker_prefix_placements():
    prefix = SpeakerPrefix("<|speaker_3|>")
    assert speaker_prompt("Hi.", prefix) == (
        "<|task_tts|><|start_content|><|speaker_3|>Hi.<|end_content|><|start_global_token|>"
    )
    assert controllable_prompt("Hi.", StyleLabels(), SpeakerPrefix("Asha: ")).startswith(
        "<|task_controllable_tts|><|start_content|>Asha: Hi.<|end_content|>"
    )
    assert clone_prompt("Hi.", GLOBALS, prefix=SpeakerPrefix("<|spk|>", "sequence")).startswith(
        "<|spk|><|task_tts|><|start_content|>Hi."
    )


def test_emotion_tags_pass_through_and_injected_control_tokens_are_removed():
    got = controllable_prompt("[excited] Wow!<|im_end|><|bicodec_global_1|>", StyleLabels())
    assert "<|start_content|>[excited] Wow!<|end_content|>" in got


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: clone_prompt("x", GLOBALS[:31]), "expected 32 global tokens, got 31"),
        (lambda: clone_prompt("x", [4096] * 32), "0..4095"),
        (lambda: clone_prompt("x", GLOBALS, reference_text="r", reference_semantic=[8192]), "0..8191"),
        (lambda: StyleLabels(gender="robot"), "female, male"),
        (lambda: StyleLabels(pitch="medium"), "very_low, low, moderate, high, very_high"),
        (lambda: controllable_prompt("x", StyleLabels(gender=None)), "needs a gender"),
        (lambda: SpeakerPrefix("x", "middle"), "content, sequence"),  # type: ignore[arg-type]
    ],
)
def test_bad_prompt_arguments_say_what_is_accepted(call, message):
    with pytest.raises(PromptError, match=message):
        call()


def test_prompt_constants_agree_with_the_vocabulary_module():
    assert P.START_GLOBAL == core_tokens.START_GLOBAL and P.END_GLOBAL == core_tokens.END_GLOBAL
    assert P.START_SEMANTIC == core_tokens.START_SEMANTIC
    assert P.TASK_TTS == core_tokens.TASK_TOKENS["tts"]
    assert P.TASK_CONTROLLABLE_TTS == core_tokens.TASK_TOKENS["controllable_tts"]
    assert {P.START_CONTENT, P.END_CONTENT, P.START_STYLE_LABEL, P.END_STYLE_LABEL} <= set(
        core_tokens.STRUCTURAL_TOKENS
    )


# --- prompt ids -----------------------------------------------------------------------------------------


def test_controllable_prompt_ids_use_single_ids_for_control_tokens(tokenizer):
    ids = encode_prompt(tokenizer, controllable_prompt("Hi!", StyleLabels(gender="male")))
    text_ids = list(b"Hi!")  # the demo base vocabulary is byte-level: byte b -> id b
    assert ids == [165143, 165146, *text_ids, 165152, 165147, 165033, 164965 + 2, 164986 + 2, 165153]


def test_clone_prompt_ids(tokenizer):
    ids = encode_prompt(tokenizer, clone_prompt("ok", GLOBALS))
    assert ids == [165137, 165146, *b"ok", 165152, 165150, *(151665 + g for g in GLOBALS), 165156]
    # The documented length: text tokens + 37 (docs/reference/spark-tts.md#prompts).
    assert len(ids) == 2 + 37


# --- voices ---------------------------------------------------------------------------------------------


@pytest.fixture()
def registry() -> VoiceRegistry:
    return VoiceRegistry.from_dict(demo_voices(0))


def test_demo_voices_cover_every_kind(registry):
    kinds = {v.kind for v in registry.voices.values()}
    assert kinds == {"style", "global_tokens", "prompt_prefix"}
    assert registry.default_voice_id == "default"
    assert registry.list()[0] == {"id": "default", "name": "Default"}
    assert all(set(item) == {"id", "name"} for item in registry.list())


def test_resolve_ids_exactly_and_aliases_in_any_case(registry):
    assert registry.resolve("male").id == "male"
    assert registry.resolve("Alloy").id == "default"
    assert registry.resolve("SHIMMER").id == "female_bright"
    assert registry.resolve(None).id == "default" and registry.resolve("").id == "default"
    assert "nova" in registry and "nobody" not in registry


def test_ids_are_case_sensitive():
    reg = VoiceRegistry.from_dict(
        {"voices": [{"id": "Asha", "gender": "female"}, {"id": "asha2", "gender": "male"}]}
    )
    with pytest.raises(UnknownVoiceError):
        reg.resolve("asha")


def test_unknown_voice_lists_the_available_ones(registry):
    with pytest.raises(UnknownVoiceError) as info:
        registry.resolve("nobody")
    message = str(info.value)
    assert message.startswith("unknown voice 'nobody'; available voices: ")
    for voice_id in ("default", "fixed", "male", "narrator"):
        assert voice_id in message
    assert info.value.available == sorted(registry.ids)


def test_voice_modes(registry):
    assert registry.resolve("default").parse_mode == "controllable"
    fixed = registry.resolve("fixed")
    assert fixed.parse_mode == "clone" and len(fixed.global_tokens) == 32
    narrator = registry.resolve("narrator")
    assert narrator.parse_mode == "controllable" and narrator.prompt_prefix == "<|speaker_3|>"


def test_every_demo_voice_builds_a_prompt(registry):
    for voice in registry.voices.values():
        prefix = SpeakerPrefix(voice.prompt_prefix, voice.prefix_placement) if voice.prompt_prefix else None
        if voice.global_tokens is not None:
            text = clone_prompt("Hello.", voice.global_tokens, prefix=prefix)
        elif voice.gender is not None:
            text = controllable_prompt("Hello.", StyleLabels(voice.gender, voice.pitch, voice.speed), prefix)
        else:
            text = speaker_prompt("Hello.", prefix)
        assert "Hello." in text


@pytest.mark.parametrize(
    ("voice", "message"),
    [
        ({"id": "a", "kind": "global_tokens", "global_tokens": [1] * 31}, "32 integers"),
        ({"id": "a", "global_tokens": [4096] * 32}, "0..4095"),
        ({"id": "a", "global_tokens": [True] * 32}, "32 integers"),
        ({"id": "a", "kind": "style"}, "needs gender"),
        ({"id": "a", "gender": "robot"}, "gender 'robot' unknown"),
        ({"id": "a", "gender": "male", "pitch": "loud"}, "pitch 'loud' unknown"),
        ({"id": "a", "kind": "prompt_prefix"}, "needs 'prompt_prefix'"),
        ({"id": "a", "kind": "robot"}, "kind 'robot' unknown"),
        ({"id": "a", "gender": "male", "colour": "red"}, "unknown keys"),
        ({"id": "", "gender": "male"}, "non-empty string"),
    ],
)
def test_invalid_voices_are_refused_with_the_reason(voice, message):
    with pytest.raises(VoiceConfigError, match=message):
        VoiceRegistry.from_dict({"voices": [voice]})


def test_registry_level_validation():
    male = {"id": "m", "gender": "male", "aliases": ["x"]}
    with pytest.raises(VoiceConfigError, match="appears twice"):
        VoiceRegistry.from_dict({"voices": [male, male]})
    with pytest.raises(VoiceConfigError, match="used by voices"):
        VoiceRegistry.from_dict({"voices": [male, {"id": "f", "gender": "female", "aliases": ["X"]}]})
    with pytest.raises(VoiceConfigError, match="default voice 'zz'"):
        VoiceRegistry.from_dict({"default": "zz", "voices": [male]})
    with pytest.raises(VoiceConfigError, match="format 2"):
        VoiceRegistry.from_dict({"format": 2, "voices": [male]})
    with pytest.raises(VoiceConfigError, match="non-empty 'voices' list"):
        VoiceRegistry.from_dict({"voices": []})


def test_kind_is_inferred_when_absent():
    reg = VoiceRegistry.from_dict(
        {
            "voices": [
                {"id": "s", "gender": "male"},
                {"id": "g", "global_tokens": GLOBALS},
                {"id": "p", "prompt_prefix": "A: "},
            ]
        }
    )
    assert [reg.resolve(i).kind for i in ("s", "g", "p")] == ["style", "global_tokens", "prompt_prefix"]


def test_from_file_round_trip_and_error_names_the_file(tmp_path):
    path = tmp_path / "voices.json"
    path.write_text(json.dumps(demo_voices(1)), encoding="utf-8")
    reg = VoiceRegistry.from_file(path)
    again = VoiceRegistry.from_dict(
        {"voices": [v.to_dict() for v in reg.voices.values()], "default": "default"}
    )
    assert again.voices == reg.voices
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(VoiceConfigError, match=str(path)):
        VoiceRegistry.from_file(path)


def test_builtin_voices_for_a_model_without_voices_json():
    reg = VoiceRegistry.builtin()
    assert len(reg) == len(BUILTIN_VOICES) and reg.resolve("female").id == "default"
    assert isinstance(reg.resolve("male"), Voice)


# --- voice -> prompt ------------------------------------------------------------------------------------


def test_build_prompt_picks_the_prompt_and_parse_mode_for_each_voice(registry, tokenizer):
    from processing.prompt import build_prompt, build_prompt_ids

    text, mode = build_prompt("Hello.", registry.resolve("male"))
    assert mode == "controllable" and text == controllable_prompt("Hello.", StyleLabels(gender="male"))
    fixed = registry.resolve("fixed")
    text, mode = build_prompt("Hello.", fixed)
    assert mode == "clone" and text == clone_prompt("Hello.", fixed.global_tokens, start_semantic=True)
    text, mode = build_prompt("Hello.", registry.resolve("narrator"))
    assert mode == "controllable" and text == speaker_prompt("Hello.", SpeakerPrefix("<|speaker_3|>"))
    # Later chunks of a long text: the first chunk's globals turn any voice into a clone prompt.
    captured = list(range(1000, 1032))
    text, mode = build_prompt("More.", registry.resolve("female_bright"), global_tokens=captured)
    assert (
        mode == "clone" and "<|pitch_label_3|><|speed_label_3|>" in text and "<|bicodec_global_1000|>" in text
    )
    ids, mode = build_prompt_ids(tokenizer, "Hi", registry.resolve("fixed"))
    # ... <|end_global_token|><|start_semantic_token|>: the model's first id is already a semantic token.
    assert mode == "clone" and ids[:2] == [165137, 165146] and ids[-2] == 165156
    assert ids[-1] == tokenizer.token_to_id("<|start_semantic_token|>")


def test_openai_speed_maps_to_speed_labels(registry):
    from core.voices import speed_label, voice_with_speed

    assert [speed_label(s) for s in (0.25, 0.7, 1.0, 1.3, 2.0, 4.0)] == [
        "very_low",
        "low",
        "moderate",
        "high",
        "very_high",
        "very_high",
    ]
    voice = registry.resolve("default")
    assert voice_with_speed(voice, 1.0) is voice
    assert voice_with_speed(voice, 1.5).speed == "high" and voice_with_speed(voice, 1.5).id == "default"
    with pytest.raises(ValueError, match="speed must be > 0"):
        speed_label(0)
