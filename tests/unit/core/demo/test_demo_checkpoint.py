"""The demo checkpoint: released layout, real vocabulary ids, deterministic, and an LLM that follows the grammar."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from core.checkpoint import load_spark_checkpoint, load_sr_checkpoint
from core.demo.checkpoint import MARKER_FILE, build_demo_checkpoint, is_complete_build
from core.tokens import TokenParser, VocabLayout
from core.voices import VoiceRegistry
from processing.prompt import (
    SpeakerPrefix,
    StyleLabels,
    clone_prompt,
    controllable_prompt,
    encode_prompt,
    speaker_prompt,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return build_demo_checkpoint(tmp_path_factory.mktemp("demo") / "model", seed=0)


@pytest.fixture(scope="module")
def tokenizer(demo):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo / "LLM")


@pytest.fixture(scope="module")
def model(demo):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo / "LLM").eval()


@pytest.fixture(scope="module")
def layout(tokenizer) -> VocabLayout:
    return VocabLayout.from_tokenizer(tokenizer, table_size=166000)


def hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- layout ---------------------------------------------------------------------------------------------


def test_passes_the_checkpoint_validators(demo):
    ckpt = load_spark_checkpoint(demo)
    assert ckpt.is_demo and ckpt.sample_rate == 16000 and ckpt.voices_file == demo / "voices.json"
    assert load_sr_checkpoint(demo / "16kto48k").config["hr_sampling_rate"] == 48000
    root = yaml.safe_load((demo / "config.yaml").read_text())
    assert root == {
        "sample_rate": 16000,
        "ref_segment_duration": 6,
        "latent_hop_length": 320,
        "volume_normalize": True,
        "demo": True,
        "demo_seed": 0,
    }


def test_llm_config_matches_the_released_shape_where_it_matters(demo):
    config = json.loads((demo / "LLM" / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["vocab_size"] == 166000 and config["tie_word_embeddings"] is True
    assert (
        config["hidden_size"] == config["num_attention_heads"] * config["head_dim"]
        and config["head_dim"] == 64
    )
    assert (config["bos_token_id"], config["eos_token_id"]) == (151643, 151645)
    assert not (demo / "LLM" / "generation_config.json").exists()  # sampling is always passed explicitly


def test_small_and_has_no_lm_head(demo):
    total = sum(p.stat().st_size for p in demo.rglob("*") if p.is_file())
    assert total < 100 * 1024 * 1024
    from safetensors import safe_open

    with safe_open(str(demo / "LLM" / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        assert f.get_slice("model.embed_tokens.weight").get_shape() == [166000, 64]
    assert "lm_head.weight" not in names and "model.layers.1.self_attn.q_proj.bias" in names


def test_voices_file_loads(demo):
    registry = VoiceRegistry.from_file(demo / "voices.json")
    assert registry.default_voice_id == "default" and len(registry) >= 4


# --- determinism and idempotence ------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_differs(demo, tmp_path):
    again = build_demo_checkpoint(tmp_path / "again", seed=0)
    assert hashes(again) == hashes(demo)
    other = hashes(build_demo_checkpoint(tmp_path / "other", seed=1))
    assert other["LLM/model.safetensors"] != hashes(demo)["LLM/model.safetensors"]
    assert other["LLM/tokenizer.json"] == hashes(demo)["LLM/tokenizer.json"]


def test_rebuild_is_a_no_op_and_a_new_seed_replaces_the_build(tmp_path):
    out = build_demo_checkpoint(tmp_path / "m", seed=3)
    weights = out / "LLM" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.perf_counter()
    assert build_demo_checkpoint(out, seed=3) == out
    assert time.perf_counter() - started < 0.5 and weights.stat().st_mtime_ns == before
    build_demo_checkpoint(out, seed=4)
    assert is_complete_build(out, 4) and not is_complete_build(out, 3)
    assert yaml.safe_load((out / "config.yaml").read_text())["demo_seed"] == 4


def test_a_damaged_build_is_rebuilt(tmp_path):
    out = build_demo_checkpoint(tmp_path / "m", seed=0)
    (out / "BiCodec" / "model.safetensors").unlink()
    assert not is_complete_build(out, 0)
    build_demo_checkpoint(out, seed=0)
    assert (out / "BiCodec" / "model.safetensors").is_file()


def test_refuses_to_overwrite_a_directory_that_is_not_a_demo_build(tmp_path):
    real = tmp_path / "real_model"
    real.mkdir()
    (real / "precious.bin").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a demo checkpoint"):
        build_demo_checkpoint(real, seed=0)
    assert (real / "precious.bin").read_bytes() == b"x" and not (real / MARKER_FILE).exists()


# --- tokenizer ------------------------------------------------------------------------------------------


def test_tokenizer_has_the_released_ids(tokenizer, layout):
    assert len(tokenizer) == 165158
    convert = tokenizer.convert_tokens_to_ids
    assert (
        convert("<|endoftext|>") == 151643
        and convert("<|im_start|>") == 151644
        and convert("<|im_end|>") == 151645
    )
    assert convert("<|bicodec_global_0|>") == 151665 and convert("<|bicodec_global_4095|>") == 155760
    assert convert("<|bicodec_semantic_0|>") == 155761 and convert("<|bicodec_semantic_8191|>") == 163952
    assert convert("<|task_tts|>") == 165137 and convert("<|task_controllable_tts|>") == 165143
    assert convert("<|start_global_token|>") == 165150 and convert("<|end_global_token|>") == 165156
    assert convert("<|end_semantic_token|>") == 165157
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id) == (151645, 151643, None)
    assert layout.semantic_offset == 155761 and layout.stop_token_ids == (151645, 165157)


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world! It's 5 p.m.",
        "नमस्ते दुनिया — 20,000 रुपये",
        "emoji 🎉 and\nnew lines\ttabs",
        "[excited] Wow.",
    ],
)
def test_ordinary_text_round_trips(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids and all(i < 256 for i in ids)  # byte-level base vocabulary
    assert tokenizer.decode(ids) == text


def test_audio_tokens_are_atomic_and_survive_skip_special_tokens(tokenizer):
    ids = tokenizer.encode("a<|bicodec_semantic_7|>b<|im_end|>", add_special_tokens=False)
    assert ids == [ord("a"), 155761 + 7, ord("b"), 151645]
    # Added audio tokens are not special: upstream's regex parsing relies on them staying in the text.
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a<|bicodec_semantic_7|>b"


def test_prompt_string_encodes_to_single_control_ids(tokenizer):
    prompt = controllable_prompt("Hi", StyleLabels(gender="female", pitch="high", speed="low"))
    ids = encode_prompt(tokenizer, prompt)
    assert ids == [165143, 165146, ord("H"), ord("i"), 165152, 165147, 165032, 164968, 164987, 165153]
    assert tokenizer.encode(prompt) == ids  # no BOS either way


# --- the LLM --------------------------------------------------------------------------------------------


def generate(model, tokenizer, layout, prompt: str, *, sample: bool = False, seed: int = 0) -> list[int]:
    ids = encode_prompt(tokenizer, prompt)
    torch.manual_seed(seed)
    kwargs = (
        {"do_sample": True, "temperature": 1.0, "top_k": 50, "top_p": 1.0} if sample else {"do_sample": False}
    )
    out = model.generate(
        torch.tensor([ids]),
        max_new_tokens=600,
        eos_token_id=list(layout.stop_token_ids),
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    return out[0, len(ids) :].tolist()


def test_controllable_prompt_yields_a_complete_parseable_voice(model, tokenizer, layout):
    text = "Hi there."
    generated = generate(model, tokenizer, layout, controllable_prompt(text, StyleLabels(gender="male")))
    names = tokenizer.convert_ids_to_tokens(generated[:5])
    assert names[0] == "<|start_acoustic_token|>" and names[1].startswith("<|pitch_value_")
    assert names[2].startswith("<|speed_value_") and names[3:5] == [
        "<|end_acoustic_token|>",
        "<|start_global_token|>",
    ]
    parser = TokenParser(layout, "controllable")
    parser.feed(generated)
    result = parser.finish()
    assert result.finished and generated[-1] == 151645
    assert len(result.global_tokens) == 32 and len(set(result.global_tokens)) > 16
    # About 3.5 semantic tokens per text token: audio length follows the text.
    assert len(result.semantic) == pytest.approx(3.5 * len(text), abs=4)
    assert len(set(result.semantic)) > len(result.semantic) // 2


def test_clone_prompt_yields_semantic_tokens_only_and_longer_text_gives_longer_audio(
    model, tokenizer, layout
):
    lengths = []
    for text in ("Hello.", "Hello, this sentence is a good deal longer."):
        generated = generate(
            model, tokenizer, layout, clone_prompt(text, list(range(32))), sample=True, seed=1
        )
        assert tokenizer.convert_ids_to_tokens(generated[0]) == "<|start_semantic_token|>"
        parser = TokenParser(layout, "clone")
        parser.feed(generated)
        result = parser.finish()
        assert result.finished and parser.unexpected_global_count == 0
        lengths.append(len(result.semantic))
    assert lengths[1] > 4 * lengths[0] > 0


def test_speaker_prefix_prompt_makes_the_model_emit_the_globals(model, tokenizer, layout):
    generated = generate(
        model, tokenizer, layout, speaker_prompt("Yes.", SpeakerPrefix("<|speaker_3|>")), sample=True
    )
    parser = TokenParser(layout, "controllable")
    delta = parser.feed(generated)
    assert delta.globals_complete and parser.finish().finished
