"""The reference encoder: 16 kHz reference audio -> 32 global tokens (+ the reference's semantic tokens), as
upstream `BiCodecTokenizer.tokenize` computes them
(docs/reference/spark-tts.md#bicodec-encode-reference-audio-to-voice-tokens), loaded from a Spark-TTS model directory.

Steps: volume normalisation when the root `config.yaml` says `volume_normalize` (default true, the released value);
the speaker branch on the first 6 s (tiled when shorter): magnitude mel -> ECAPA -> perceiver -> FSQ; the semantic
branch on the whole waveform: wav2vec2 -> BiCodec encoder -> quantizer. Everything runs in float32.

Loading reads only the encode tensors of `BiCodec/model.safetensors` (the decoder has its own copy of the rest) and
checks the file: a tensor the encode tree needs must exist with the expected shape, so a decode-only or foreign
file is refused with its name, never half-loaded.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import safe_open
from torch import nn

from core.bicodec import CONFIG_FILE, RELEASED_CONFIG, WEIGHTS_FILE, unwrap_config
from core.clone.mel import MagnitudeMel, MelConfig
from core.clone.semantic import SemanticTokenizer, Wav2VecFeatures
from core.clone.speaker import SpeakerTokenizer, SpeakerWidths
from core.nn import fold_weight_norms

WAV2VEC2_DIR = "wav2vec2-large-xlsr-53"
BICODEC_DIR = "BiCodec"
ROOT_CONFIG = "config.yaml"
# The four root `config.yaml` keys upstream's tokenizer reads, with the released values
# (docs/reference/spark-tts.md#checkpoint-layout).
ROOT_DEFAULTS: dict[str, Any] = {
    "sample_rate": 16000,
    "ref_segment_duration": 6,
    "latent_hop_length": 320,
    "volume_normalize": True,
}
VOLUME_COEFF = 0.2


class EncodeAbandoned(RuntimeError):
    """Nobody waits for this encode any more (see ReferenceEncoder.encode's `stop`)."""


class CloningUnavailable(RuntimeError):
    """The model directory lacks what encoding needs (wav2vec2, or BiCodec's encoder tensors)."""


@dataclass(frozen=True)
class ReferenceTokens:
    """What a reference encodes to: the voice (32 global ids, 0..4095) and, when asked, the reference speech itself
    as semantic ids (0..8191, 50 per second) for a continuation prompt with its transcript."""

    global_tokens: tuple[int, ...]
    semantic_tokens: tuple[int, ...] | None = None


def cloning_unavailable_reason(model_dir: str | os.PathLike[str]) -> str | None:
    """None when `model_dir` has the files encoding needs; otherwise what is missing, naming the file. (The
    encoder tensors inside `BiCodec/model.safetensors` are checked when the encoder loads.)"""
    root = Path(model_dir)
    if not (root / WAV2VEC2_DIR / "config.json").is_file():
        return f"{root / WAV2VEC2_DIR}: missing; voice cloning needs the wav2vec2 encoder (python -m core.weights)"
    if not (root / BICODEC_DIR / WEIGHTS_FILE).is_file():
        return f"{root / BICODEC_DIR / WEIGHTS_FILE}: missing"
    return None


def volume_normalize(audio: np.ndarray, coeff: float = VOLUME_COEFF) -> np.ndarray:
    """Upstream's percentile loudness normalisation, in float64.

    A quiet signal (peak < 0.1) is first scaled to a peak of 0.1; the gain then comes from the mean of the
    90th-99th percentile band of the magnitudes above 0.01 of the signal *before* that first scaling (upstream
    sorts once, up front), clipped to 0.1..10; finally anything above full scale is divided back to 1."""
    audio = np.asarray(audio, dtype=np.float64)
    magnitudes = np.sort(np.abs(audio))
    if magnitudes[-1] < 0.1:
        audio = audio / max(magnitudes[-1], 1e-3) * 0.1
    loud = magnitudes[magnitudes > 0.01]
    if loud.size <= 10:
        return audio
    volume = np.mean(loud[int(0.9 * loud.size) : int(0.99 * loud.size)])
    audio = audio * np.clip(coeff / volume, 0.1, 10)
    peak = np.max(np.abs(audio))
    return audio / peak if peak > 1 else audio


def reference_clip(audio: np.ndarray, length: int) -> np.ndarray:
    """The first `length` samples, tiling the audio first when it is shorter."""
    if audio.size < length:
        audio = np.tile(audio, length // audio.size + 1)
    return audio[:length]


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CloningUnavailable(f"{path}: expected a YAML mapping")
    return data


def load_encode_tensors(module: nn.Module, weights: Path, prefix: str) -> None:
    """Fill `module` (built on the meta device) with the file's tensors named `prefix` + its own names; every one
    must exist with its shape. Integer tensors (BatchNorm counters) are never asked for; floats become float32."""
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(weights), framework="pt", device="cpu") as f:
        names = set(f.keys())
        missing = sorted(prefix + n for n in expected if prefix + n not in names)
        if missing:
            more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
            raise CloningUnavailable(
                f"{weights}: lacks the encoder tensor(s) {missing[:3]}{more}; voice cloning "
                "needs the full BiCodec checkpoint (the released file has them)"
            )
        for name, shape in expected.items():
            tensor = f.get_tensor(prefix + name)
            if tuple(tensor.shape) != shape:
                raise CloningUnavailable(
                    f"{weights}: tensor {prefix + name} has shape {list(tensor.shape)}, "
                    f"expected {list(shape)}"
                )
            state[name] = tensor.to(torch.float32)
    module.load_state_dict(state, strict=True, assign=True)
    fold_weight_norms(module)
    module.requires_grad_(False).eval()


def _tensor_shapes(weights: Path, prefix: str) -> dict[str, tuple[int, ...]]:
    with safe_open(str(weights), framework="pt", device="cpu") as f:
        return {n: tuple(f.get_slice(n).get_shape()) for n in f.keys() if n.startswith(prefix)}


class ReferenceEncoder:
    """Loaded once per process (lazily: wav2vec2 is 1.2 GB and only cloning needs it). Thread-safe for calls
    that do not overlap; the service runs one encode at a time per encoder."""

    def __init__(
        self,
        *,
        root_config: Mapping[str, Any],
        mel: MagnitudeMel,
        speaker: SpeakerTokenizer,
        semantic: SemanticTokenizer,
        wav2vec2: Wav2VecFeatures,
        device: torch.device,
    ) -> None:
        config = {**ROOT_DEFAULTS, **root_config}
        if int(config["sample_rate"]) != 16000:
            raise CloningUnavailable(
                f"root config sample_rate {config['sample_rate']}: only 16000 is supported"
            )
        self.volume_normalize = bool(config["volume_normalize"])
        hop = int(config["latent_hop_length"])
        self.clip_samples = int(16000 * float(config["ref_segment_duration"])) // hop * hop
        self.mel, self.speaker, self.semantic = mel, speaker, semantic
        self.wav2vec2 = wav2vec2
        self.device = device
        self.load_seconds: float | None = None

    @classmethod
    def from_pretrained(
        cls, model_dir: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> ReferenceEncoder:
        started = time.perf_counter()
        root = Path(model_dir)
        reason = cloning_unavailable_reason(root)
        if reason is not None:
            raise CloningUnavailable(reason)
        root_config = _read_yaml(root / ROOT_CONFIG) if (root / ROOT_CONFIG).is_file() else {}
        bicodec_config_path = root / BICODEC_DIR / CONFIG_FILE
        config = unwrap_config(
            _read_yaml(bicodec_config_path) if bicodec_config_path.is_file() else RELEASED_CONFIG
        )
        weights = root / BICODEC_DIR / WEIGHTS_FILE
        device = torch.device(device)
        try:
            widths = SpeakerWidths.from_shapes(_tensor_shapes(weights, "speaker_encoder."))
        except KeyError as exc:
            raise CloningUnavailable(
                f"{weights}: {exc.args[0]}; voice cloning needs the full BiCodec checkpoint"
            ) from exc
        with torch.device("meta"):
            speaker = SpeakerTokenizer(widths, config["speaker_encoder"]["fsq_levels"])
            semantic = SemanticTokenizer(config["encoder"], config["quantizer"])
        load_encode_tensors(speaker, weights, "speaker_encoder.")
        load_encode_tensors(semantic, weights, "")
        mel = MagnitudeMel(MelConfig.from_dict(config["mel_params"]))
        if mel.config.num_mels != widths.mel_bins:
            raise CloningUnavailable(
                f"{bicodec_config_path}: num_mels {mel.config.num_mels} but the speaker encoder "
                f"reads {widths.mel_bins} mel bins"
            )
        encoder = cls(
            root_config=root_config,
            mel=mel.to(device),
            speaker=speaker.to(device),
            semantic=semantic.to(device),
            wav2vec2=Wav2VecFeatures.from_pretrained(root / WAV2VEC2_DIR, device),
            device=device,
        )
        encoder.load_seconds = time.perf_counter() - started
        return encoder

    def prepare(self, samples: np.ndarray) -> np.ndarray:
        """Volume normalisation (when the checkpoint's config asks for it), float64 as upstream."""
        audio = np.asarray(samples, dtype=np.float64)
        return volume_normalize(audio) if self.volume_normalize else audio

    @torch.inference_mode()
    def global_tokens(self, prepared: np.ndarray) -> tuple[int, ...]:
        clip = torch.from_numpy(reference_clip(prepared, self.clip_samples)).to(torch.float32).to(self.device)
        ids = self.speaker(self.mel(clip.unsqueeze(0)))
        return tuple(int(g) for g in ids[0].tolist())

    @torch.inference_mode()
    def semantic_tokens(self, prepared: np.ndarray) -> tuple[int, ...]:
        features = self.wav2vec2(prepared)
        ids = self.semantic(features.to(self.device))
        return tuple(int(s) for s in ids[0].tolist())

    def encode(
        self, samples: np.ndarray, *, semantic: bool = True, stop: threading.Event | None = None
    ) -> ReferenceTokens:
        """`samples`: 16 kHz mono (as `decode_reference_audio` returns, before volume normalisation). `stop`: set by
        whoever waits for this call when it no longer wants the answer (its client left, its deadline passed);
        checked between stages, so an abandoned encode costs at most the stage it was in (EncodeAbandoned)."""
        prepared = self.prepare(samples)
        _check(stop)
        globals_ = self.global_tokens(prepared)
        _check(stop)
        return ReferenceTokens(
            global_tokens=globals_, semantic_tokens=self.semantic_tokens(prepared) if semantic else None
        )


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise EncodeAbandoned("the encode was abandoned")
