"""The semantic branch of BiCodec's encode half
(docs/reference/spark-tts.md#bicodec-encode-reference-audio-to-voice-tokens): wav2vec2 features -> BiCodec `encoder`
-> `quantizer.in_project` -> cosine-nearest codebook row -> semantic ids in 0..8191 (50 per second).

`Wav2VecFeatures` is HF transformers' `Wav2Vec2Model` (the checkpoint's `wav2vec2-large-xlsr-53/`, released as a
`Wav2Vec2ForPreTraining` pickle or safetensors; HF maps either) plus its own feature extractor's per-utterance
normalisation. BiCodec averages hidden states 11, 14 and 16: in HF's stable-layer-norm encoder hidden_states[k] is
the output of transformer layer k (no final LayerNorm), so the layers after 16 are dropped (a third of the compute)
and the three outputs come back from the model call itself (`output_hidden_states`, recorded per call in a context
variable by HF, so concurrent encodes in several threads never see each other's layers).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.nn import UnitRatioSampling, VocosBackbone, WNConv1d

if TYPE_CHECKING:  # transformers is imported when a model is loaded, not with this module
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

# hidden_states indices upstream averages (`extract_wav2vec2_features`): outputs of layers 11, 14 and 16.
WAV2VEC2_LAYERS = (11, 14, 16)


class Wav2VecFeatures:
    """Waveform (16 kHz) -> mean of the three wav2vec2 layer outputs [1, frames, hidden]."""

    def __init__(
        self,
        model: Wav2Vec2Model,
        extractor: Wav2Vec2FeatureExtractor,
        layers: Sequence[int] = WAV2VEC2_LAYERS,
    ) -> None:
        self.layers = tuple(layers)
        encoder_layers = model.encoder.layers
        if len(encoder_layers) < max(self.layers):
            raise ValueError(f"wav2vec2 has {len(encoder_layers)} layers; layer {max(self.layers)} is needed")
        if not getattr(model.config, "do_stable_layer_norm", False):
            raise ValueError(
                "wav2vec2 must use the stable-layer-norm encoder (do_stable_layer_norm: true), as "
                "wav2vec2-large-xlsr-53 does; with the other variant hidden state k is not layer k's output"
            )
        del encoder_layers[max(self.layers) :]  # later layers never reach the features
        # The encoder's final LayerNorm only shapes last_hidden_state, which is never read. Without it the last kept
        # layer's hidden state is its raw output whether or not a transformers version ties it to last_hidden_state.
        model.encoder.layer_norm = nn.Identity()  # type: ignore[assignment]  # typed LayerNorm; any Module serves
        self.model = model.eval()
        self.extractor = extractor

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> Wav2VecFeatures:
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model
        from transformers.utils import logging as hf_logging

        # The released file is a Wav2Vec2ForPreTraining checkpoint: its pre-training heads are "unexpected" keys
        # for Wav2Vec2Model, which HF reports at length. Expected here; keep the service log clean.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(directory))
            # transformers types `to` on PreTrainedModel as taking the model again: its own stubs are wrong here.
            model = Wav2Vec2Model.from_pretrained(str(directory), dtype=torch.float32).to(device)  # type: ignore[arg-type]
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        return cls(model, extractor)

    def normalized_input(self, samples: np.ndarray) -> Tensor:
        """The extractor's per-utterance (x - mean) / sqrt(var + 1e-7), in float32 as it computes it."""
        values: Tensor = self.extractor(samples, sampling_rate=16000, return_tensors="pt").input_values
        return values.to(torch.float32)

    @torch.inference_mode()
    def __call__(self, samples: np.ndarray) -> Tensor:
        return self.features_from_input(self.normalized_input(samples))

    @torch.inference_mode()
    def layer_outputs(self, input_values: Tensor) -> dict[int, Tensor]:
        """The outputs of the averaged layers for one normalised input, {layer number: [1, frames, hidden]}.

        Nothing is kept on the shared model: HF records the hidden states of this call in a context variable of its
        own (per thread), so several threads may encode at once."""
        hidden = self.model(input_values.to(self.model.device), output_hidden_states=True).hidden_states
        return {number: hidden[number] for number in self.layers}

    @torch.inference_mode()
    def features_from_input(self, input_values: Tensor) -> Tensor:
        outputs = self.layer_outputs(input_values)
        # Summed in upstream's order, then divided: (h11 + h14 + h16) / 3. The layers are never empty, so the sum
        # (which starts from the int 0) is a tensor.
        summed = cast(Tensor, sum(outputs[number] for number in self.layers))
        return summed / len(self.layers)


class FeatureEncoder(nn.Module):
    """BiCodec `encoder`: wav2vec2 features [B, H, T] -> latent [B, D, T]; names as stored under `encoder.`."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        dim, inter = int(config["vocos_dim"]), int(config["vocos_intermediate_dim"])
        ratios = [int(r) for r in config.get("sample_ratios", [1, 1])]
        if any(r != 1 for r in ratios):
            raise ValueError(
                f"encoder sample_ratios {ratios}: only ratio 1 (the released value) is supported"
            )
        self.encoder = VocosBackbone(
            dim, inter, int(config["vocos_num_layers"]), None, input_channels=int(config["input_channels"])
        )
        self.downsample = nn.ModuleList(
            nn.ModuleList([UnitRatioSampling(), VocosBackbone(dim, inter, 2, None)]) for _ in ratios
        )
        self.project = nn.Linear(dim, int(config["out_channels"]))

    def forward(self, features: Tensor) -> Tensor:
        x = self.encoder(features)
        # Each stage is a (sampler, backbone) ModuleList; torch types a ModuleList's items as plain Modules.
        for sampler, backbone in cast(Iterable[nn.ModuleList], self.downsample):
            x = backbone(sampler(x))
        latent: Tensor = self.project(x.transpose(1, 2)).transpose(1, 2)
        return latent


class SemanticQuantizer(nn.Module):
    """`quantizer` (encode half): in_project, then the codebook row with the highest cosine similarity."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        size, dim, latent = (
            int(config["codebook_size"]),
            int(config["codebook_dim"]),
            int(config["input_dim"]),
        )
        self.in_project: nn.Module = WNConv1d(latent, dim, 1) if dim != latent else nn.Identity()
        self.codebook = nn.Embedding(size, dim, _weight=torch.empty(size, dim), _freeze=True)

    def project(self, latent: Tensor) -> Tensor:
        projected: Tensor = self.in_project(latent)
        return projected

    def forward(self, latent: Tensor) -> Tensor:  # [B, D, T] -> [B, T]
        projected = F.normalize(self.project(latent).transpose(1, 2), dim=-1)  # [B, T, dim]
        codebook = F.normalize(self.codebook.weight, dim=-1)
        return (projected @ codebook.t()).argmax(dim=-1)


class SemanticTokenizer(nn.Module):
    """wav2vec2 features [B, T, H] -> semantic ids [B, T]."""

    def __init__(self, encoder_config: Mapping[str, Any], quantizer_config: Mapping[str, Any]) -> None:
        super().__init__()
        self.encoder = FeatureEncoder(encoder_config)
        self.quantizer = SemanticQuantizer(quantizer_config)

    def forward(self, features: Tensor) -> Tensor:
        ids: Tensor = self.quantizer(self.encoder(features.transpose(1, 2)))
        return ids
