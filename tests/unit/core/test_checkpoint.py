"""The model-directory validator names each missing or malformed file and what it expected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.checkpoint import CheckpointError, load_spark_checkpoint, load_sr_checkpoint
from tests.conftest import FIXTURES

FIXTURE_MANIFEST = FIXTURES / "bicodec_manifest.json"


@pytest.fixture
def model_dir(writable_demo_dir: Path) -> Path:
    """A private copy of the demo checkpoint that each test may break."""
    return writable_demo_dir


def expect_error(path_fragment: str, expected: str, root: Path, loader=load_spark_checkpoint) -> None:
    with pytest.raises(CheckpointError) as info:
        loader(root)
    message = str(info.value)
    assert path_fragment in message, message
    assert expected in message, message


def test_the_demo_checkpoint_is_valid(model_dir: Path) -> None:
    checkpoint = load_spark_checkpoint(model_dir)
    assert checkpoint.is_demo and checkpoint.sample_rate == 16000
    assert checkpoint.llm_dir == model_dir / "LLM" and checkpoint.bicodec_dir == model_dir / "BiCodec"
    assert checkpoint.voices_file == model_dir / "voices.json"
    assert load_sr_checkpoint(model_dir / "16kto48k").config["hr_sampling_rate"] == 48000


def test_missing_directory(tmp_path: Path) -> None:
    expect_error("nowhere", "expected a Spark-TTS model directory", tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("config.yaml", "root audio config"),
        ("LLM/config.json", "Qwen2 config.json"),
        ("LLM/model.safetensors", "LLM weights in safetensors"),
        ("LLM/tokenizer.json", "fast tokenizer"),
        ("BiCodec/model.safetensors", "BiCodec weights"),
    ],
)
def test_each_missing_file_is_named(model_dir: Path, relative: str, expected: str) -> None:
    (model_dir / relative).unlink()
    expect_error(relative, expected, model_dir)


@pytest.mark.parametrize("part", ["LLM", "BiCodec"])
def test_missing_subdirectory(model_dir: Path, part: str) -> None:
    shutil.rmtree(model_dir / part)
    expect_error(part, "expected the", model_dir)


def test_root_config_with_the_wrong_rate(model_dir: Path) -> None:
    (model_dir / "config.yaml").write_text("sample_rate: 24000\n")
    expect_error("config.yaml", "expected 16000", model_dir)


def test_root_config_that_is_not_yaml(model_dir: Path) -> None:
    (model_dir / "config.yaml").write_text("sample_rate: [16000\n")
    expect_error("config.yaml", "not valid YAML", model_dir)


def test_llm_config_of_another_architecture(model_dir: Path) -> None:
    path = model_dir / "LLM" / "config.json"
    config = json.loads(path.read_text())
    config["model_type"] = "llama"
    path.write_text(json.dumps(config))
    expect_error("LLM/config.json", "expected 'qwen2'", model_dir)


def test_llm_config_missing_keys(model_dir: Path) -> None:
    path = model_dir / "LLM" / "config.json"
    config = json.loads(path.read_text())
    del config["vocab_size"]
    path.write_text(json.dumps(config))
    expect_error("LLM/config.json", "vocab_size", model_dir)


def test_llm_config_that_is_not_json(model_dir: Path) -> None:
    (model_dir / "LLM" / "config.json").write_text("{not json")
    expect_error("LLM/config.json", "not valid JSON", model_dir)


def test_bicodec_config_without_audio_tokenizer(model_dir: Path) -> None:
    (model_dir / "BiCodec" / "config.yaml").write_text("decoder: {}\n")
    expect_error("BiCodec/config.yaml", "audio_tokenizer", model_dir)


def test_bicodec_config_missing_sections(model_dir: Path) -> None:
    (model_dir / "BiCodec" / "config.yaml").write_text("audio_tokenizer:\n  decoder: {}\n")
    expect_error("BiCodec/config.yaml", "quantizer", model_dir)


def test_malformed_voices_file(model_dir: Path) -> None:
    (model_dir / "voices.json").write_text("[1, 2]")
    expect_error("voices.json", "expected a JSON object", model_dir)


def test_sr_directory_errors(model_dir: Path) -> None:
    sr = model_dir / "16kto48k"
    (sr / "g_16kto48k").unlink()
    expect_error("g_16kto48k", "generator checkpoint", sr, load_sr_checkpoint)
    config = json.loads((sr / "config.json").read_text())
    config["hr_sampling_rate"] = 44100
    (sr / "config.json").write_text(json.dumps(config))
    expect_error("config.json", "expected 16000->48000", sr, load_sr_checkpoint)
    (sr / "config.json").unlink()
    expect_error("config.json", "AP-BWE config.json", sr, load_sr_checkpoint)


# ------------------------------------------------------------------------------------------- fine-tune layout


def test_a_finetune_with_the_llm_at_the_root_is_accepted(demo_model_dir: Path, tmp_path: Path) -> None:
    from tests.finetune import finetune_layout

    root = finetune_layout(demo_model_dir, tmp_path / "ft", root_config=False)
    checkpoint = load_spark_checkpoint(root)
    assert checkpoint.layout == "finetune" and checkpoint.llm_dir == root
    assert checkpoint.sample_rate == 16000 and checkpoint.root_config_file is None
    assert checkpoint.voices_file is None and not checkpoint.is_demo


def test_llm_dir_and_root_weights_together_are_refused_naming_both(model_dir: Path) -> None:
    shutil.copy2(model_dir / "LLM" / "config.json", model_dir / "config.json")
    (model_dir / "model.safetensors").symlink_to((model_dir / "LLM" / "model.safetensors").resolve())
    with pytest.raises(CheckpointError) as info:
        load_spark_checkpoint(model_dir)
    assert (
        "LLM" in str(info.value) and "model.safetensors" in str(info.value) and "keep one" in str(info.value)
    )


def test_neither_layout_says_what_was_expected(model_dir: Path) -> None:
    shutil.rmtree(model_dir / "LLM")
    expect_error("LLM", "a fine-tune with its HF LLM files at the root", model_dir)


def test_missing_bicodec_config_uses_the_released_config_only_when_the_shapes_match(model_dir: Path) -> None:
    from core.bicodec import BiCodecDecoder, BiCodecLoadError

    (model_dir / "BiCodec" / "config.yaml").unlink()
    assert load_spark_checkpoint(model_dir).bicodec_dir == model_dir / "BiCodec"
    # The demo codec is smaller than the released one: the decoder says so and what to do.
    with pytest.raises(
        BiCodecLoadError, match="not the released BiCodec size.*copy the checkpoint's BiCodec/config.yaml"
    ):
        BiCodecDecoder.from_pretrained(model_dir / "BiCodec")


def test_missing_bicodec_config_with_released_shapes_loads() -> None:
    from core.bicodec import RELEASED_CONFIG, decode_tensor_shapes

    manifest = FIXTURE_MANIFEST
    if not manifest.is_file():
        pytest.skip(f"{manifest} not found")
    released = json.loads(manifest.read_text())
    decode = {n: tuple(t["shape"]) for n, t in released["tensors"].items() if t["decode_path"]}
    assert released["config"] == RELEASED_CONFIG
    assert decode_tensor_shapes(RELEASED_CONFIG) == decode
