"""Find and validate a Spark-TTS model directory. Two layouts are accepted
(docs/reference/spark-tts.md#the-fine-tune-layout):

- "released" (Spark-TTS-0.5B): root `config.yaml`, `LLM/` (HF Qwen2 + tokenizer), `BiCodec/`.
- "finetune": the HF LLM files at the root (`config.json`, `model.safetensors` or shards, `tokenizer.json`), as
  `save_pretrained` writes them, with `BiCodec/` beside them; the root `config.yaml` is optional (16 kHz assumed)
  and `BiCodec/config.yaml` may be missing when the weights have the released shapes.
Both: optional `wav2vec2-large-xlsr-53/` (only for encoding reference audio), optional `voices.json`, optional
AP-BWE `16kto48k/` (config.json + g_16kto48k; or anywhere with TTS_SR_DIR). A directory holding both `LLM/` and
root LLM weights is refused: which one to serve would be a guess. Every failure names the file and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LLM_REQUIRED_CONFIG_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
)
BICODEC_SECTIONS = ("quantizer", "speaker_encoder", "prenet", "decoder")
APBWE_REQUIRED_KEYS = (
    "n_fft",
    "hop_size",
    "win_size",
    "hr_sampling_rate",
    "lr_sampling_rate",
    "ConvNeXt_channels",
)


class CheckpointError(ValueError):
    """The model directory is missing a file or a file does not hold what is expected."""


@dataclass(frozen=True)
class SparkCheckpoint:
    root: Path
    llm_dir: Path
    bicodec_dir: Path
    sample_rate: int
    is_demo: bool
    wav2vec2_dir: Path | None
    voices_file: Path | None
    layout: str = "released"  # released | finetune
    root_config_file: Path | None = None

    @property
    def name(self) -> str:
        return self.root.resolve().name


@dataclass(frozen=True)
class SRCheckpoint:
    root: Path
    config: dict[str, Any]
    weights: Path


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; expected {what}")
    return path


def _load_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CheckpointError(
            f"{path}: not valid YAML ({exc.__class__.__name__}); expected a YAML mapping"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: expected a YAML mapping at the top level, found {type(data).__name__}"
        )
    return data


def _load_json_mapping(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); expected a JSON object") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level, found {type(data).__name__}")
    return data


def _llm_weight_files(directory: Path) -> list[str]:
    """The HF LLM weight files in `directory`: safetensors files or shards and their index."""
    names = [p.name for p in sorted(directory.glob("*.safetensors"))]
    if (directory / "model.safetensors.index.json").is_file():
        names.append("model.safetensors.index.json")
    return names


def _validate_llm(llm_dir: Path) -> None:
    if not llm_dir.is_dir():
        raise CheckpointError(
            f"{llm_dir}: missing; expected the LLM/ directory (HF Qwen2 checkpoint and tokenizer)"
        )
    config = _load_json_mapping(_require_file(llm_dir / "config.json", "the Qwen2 config.json"))
    missing = [k for k in LLM_REQUIRED_CONFIG_KEYS if k not in config]
    if missing:
        raise CheckpointError(f"{llm_dir / 'config.json'}: missing keys {missing}; expected a Qwen2 config")
    if config.get("model_type") != "qwen2":
        raise CheckpointError(
            f"{llm_dir / 'config.json'}: model_type is {config.get('model_type')!r}; expected 'qwen2'"
        )
    if not _llm_weight_files(llm_dir):
        raise CheckpointError(
            f"{llm_dir / 'model.safetensors'}: missing; expected the LLM weights in safetensors"
        )
    _require_file(llm_dir / "tokenizer.json", "the fast tokenizer with the Spark-TTS added tokens")


def _validate_bicodec(bicodec_dir: Path) -> None:
    if not bicodec_dir.is_dir():
        raise CheckpointError(
            f"{bicodec_dir}: missing; expected the BiCodec/ directory (config.yaml + model.safetensors)"
        )
    config_path = bicodec_dir / "config.yaml"
    if config_path.is_file():
        config = _load_yaml_mapping(config_path)
        section = config.get("audio_tokenizer")
        if not isinstance(section, dict):
            raise CheckpointError(
                f"{config_path}: no 'audio_tokenizer' mapping; expected the released BiCodec config layout"
            )
        missing = [k for k in BICODEC_SECTIONS if not isinstance(section.get(k), dict)]
        if missing:
            raise CheckpointError(
                f"{config_path}: audio_tokenizer lacks sections {missing}; expected {list(BICODEC_SECTIONS)}"
            )
    # Without config.yaml the decoder checks the weights against the released shapes when it loads them.
    _require_file(bicodec_dir / "model.safetensors", "the BiCodec weights (float32 safetensors)")


def _root_sample_rate(path: Path) -> tuple[int, bool]:
    config = _load_yaml_mapping(path)
    sample_rate = config.get("sample_rate")
    if sample_rate != 16000:
        raise CheckpointError(f"{path}: sample_rate is {sample_rate!r}; expected 16000")
    return 16000, bool(config.get("demo", False))


def load_spark_checkpoint(root: Path | str) -> SparkCheckpoint:
    """Validate `root` and return where each part lives. Raises CheckpointError naming the bad file."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(
            f"{root}: not a directory; expected a Spark-TTS model directory (TTS_MODEL_DIR)"
        )
    root_weights = _llm_weight_files(root)
    has_llm_dir = (root / "LLM").is_dir()
    if has_llm_dir and root_weights:
        raise CheckpointError(
            f"{root}: holds both {root / 'LLM'}/ and LLM weights at the root ({', '.join(root_weights)}); "
            "keep one: LLM/ for the released layout, or the root files for a fine-tune"
        )
    root_config_path = root / "config.yaml"
    if root_weights:
        layout, llm_dir = "finetune", root
        sample_rate, is_demo = (
            _root_sample_rate(root_config_path) if root_config_path.is_file() else (16000, False)
        )
    else:
        layout, llm_dir = "released", root / "LLM"
        if not has_llm_dir:
            raise CheckpointError(
                f"{root / 'LLM'}: missing, and no LLM weights (*.safetensors) at {root}; expected the released "
                "layout (config.yaml, LLM/, BiCodec/) or a fine-tune with its HF LLM files at the root"
            )
        _require_file(root_config_path, "the root audio config (sample_rate: 16000, ...)")
        sample_rate, is_demo = _root_sample_rate(root_config_path)
    _validate_llm(llm_dir)
    _validate_bicodec(root / "BiCodec")
    wav2vec2 = root / "wav2vec2-large-xlsr-53"
    voices = root / "voices.json"
    if voices.exists():
        _load_json_mapping(voices)
    return SparkCheckpoint(
        root=root,
        llm_dir=llm_dir,
        bicodec_dir=root / "BiCodec",
        sample_rate=sample_rate,
        is_demo=is_demo,
        wav2vec2_dir=wav2vec2 if wav2vec2.is_dir() else None,
        voices_file=voices if voices.is_file() else None,
        layout=layout,
        root_config_file=root_config_path if root_config_path.is_file() else None,
    )


def load_sr_checkpoint(root: Path | str) -> SRCheckpoint:
    """Validate an AP-BWE 16kto48k directory (config.json + g_16kto48k)."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a directory; expected the AP-BWE 16kto48k/ directory")
    config_path = _require_file(root / "config.json", "the AP-BWE config.json")
    config = _load_json_mapping(config_path)
    missing = [k for k in APBWE_REQUIRED_KEYS if k not in config]
    if missing:
        raise CheckpointError(f"{config_path}: missing keys {missing}; expected the AP-BWE 16kto48k config")
    if (config["lr_sampling_rate"], config["hr_sampling_rate"]) != (16000, 48000):
        raise CheckpointError(
            f"{config_path}: rates {config['lr_sampling_rate']}->{config['hr_sampling_rate']}; expected 16000->48000"
        )
    weights = _require_file(
        root / "g_16kto48k", "the generator checkpoint (torch.save {'generator': state_dict})"
    )
    return SRCheckpoint(root=root, config=config, weights=weights)
