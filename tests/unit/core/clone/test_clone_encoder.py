"""The encode path (voice cloning) against upstream's reference outputs in fixtures/bicodec_encode_tiny: every stage
fed its stored input (continuous tensors within 1e-4, token ids exactly equal), end to end from a file, the command
line, the round trip through our decoder, and the released tensor names and shapes."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from core.bicodec import BiCodecDecoder, unwrap_config
from core.clone import (
    CloningUnavailable,
    ReferenceEncoder,
    cloning_unavailable_reason,
    decode_reference_audio,
)
from core.clone.encoder import reference_clip, volume_normalize
from core.clone.mel import mel_filterbank
from core.clone.semantic import SemanticTokenizer
from core.clone.speaker import UNUSED_PREFIXES, SpeakerTokenizer, SpeakerWidths
from tests.conftest import FIXTURES, PROJECT_ROOT

ENCODE_DIR = FIXTURES / "bicodec_encode_tiny"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    if not (ENCODE_DIR / "expected.npz").is_file():
        pytest.skip(f"encode fixture not found at {ENCODE_DIR}")
    return dict(np.load(ENCODE_DIR / "expected.npz"))


@pytest.fixture(scope="module")
def encoder() -> ReferenceEncoder:
    return ReferenceEncoder.from_pretrained(ENCODE_DIR)


def max_error(actual, reference) -> float:
    a = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    return float(np.max(np.abs(a.astype(np.float64) - np.asarray(reference, dtype=np.float64))))


def float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    """A float32 WAV, as the fixture README says upstream reads its input."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- stage by stage


def test_volume_normalisation_and_reference_clip(encoder, expected):
    prepared = encoder.prepare(expected["wav"].astype(np.float64))
    # The fixture's peak is below 0.1: the gain must come from the magnitudes before the first scaling (0.569 peak).
    assert max_error(prepared.astype(np.float32), expected["wav_norm"]) == 0.0
    assert abs(float(np.max(np.abs(prepared))) - 0.569) < 1e-3
    clip = reference_clip(prepared, encoder.clip_samples).astype(np.float32)
    assert encoder.clip_samples == 96_000 and clip.shape == (96_000,)  # tiled: the reference is 3.3 s
    assert max_error(clip, expected["ref_clip"]) == 0.0


def test_mel_filterbank_and_spectrogram(encoder, expected):
    assert max_error(mel_filterbank(513, 10.0, 8000.0, 128, 16000), expected["mel_fb"]) < 1e-6
    with torch.inference_mode():
        mel = encoder.mel(torch.from_numpy(expected["ref_clip"]).unsqueeze(0))
    assert mel.shape == (1, 128, 301)
    assert max_error(mel, expected["mel"]) < TOLERANCE


def test_speaker_branch_stages(encoder, expected):
    speaker = encoder.speaker
    with torch.inference_mode():
        latent = speaker.speaker_encoder(torch.from_numpy(expected["mel"]))
        assert latent.shape == (1, 192, 301)
        assert max_error(latent, expected["ecapa_latent"]) < TOLERANCE
        perceived = speaker.perceiver_sampler(torch.from_numpy(expected["ecapa_latent"]).transpose(1, 2))
        assert max_error(perceived, expected["perceiver_out"]) < TOLERANCE
        stored = torch.from_numpy(expected["perceiver_out"])
        assert max_error(speaker.quantizer.project_in(stored), expected["fsq_pre_bound"]) < TOLERANCE
        assert max_error(speaker.quantizer.bounded(stored), expected["fsq_pre_round"]) < TOLERANCE
        ids = speaker.quantizer(stored)
    assert ids.tolist() == expected["global_tokens"].reshape(1, 32).tolist()


def test_semantic_branch_stages(encoder, expected):
    features = encoder.wav2vec2
    assert (
        max_error(features.normalized_input(expected["wav_norm"].astype(np.float64)), expected["w2v_input"])
        < 1e-6
    )
    out = features.features_from_input(torch.from_numpy(expected["w2v_input"]))
    layers = features.layer_outputs(torch.from_numpy(expected["w2v_input"]))
    for index, layer in enumerate((11, 14, 16)):
        assert max_error(layers[layer], expected["w2v_hidden_11_14_16"][index]) < TOLERANCE
    assert max_error(out, expected["w2v_features"]) < TOLERANCE
    assert len(features.model.encoder.layers) == 16  # layers 17-24 never influence the features: not run
    semantic = encoder.semantic
    with torch.inference_mode():
        latent = semantic.encoder(torch.from_numpy(expected["w2v_features"]).transpose(1, 2))
        assert max_error(latent, expected["encoder_out"]) < TOLERANCE
        stored = torch.from_numpy(expected["encoder_out"])
        assert max_error(semantic.quantizer.project(stored), expected["quantizer_in_proj"]) < TOLERANCE
        assert semantic.quantizer(stored).tolist() == expected["semantic_tokens"].tolist()


# ---------------------------------------------------------------------------------------------- end to end


def test_end_to_end_from_a_file_gives_the_fixture_tokens(encoder, expected):
    reference = decode_reference_audio(float_wav(expected["wav"]))
    assert reference.samples.dtype == np.float64 and reference.samples.size == 52_817
    tokens = encoder.encode(reference.samples)
    assert list(tokens.global_tokens) == expected["global_tokens"].ravel().tolist()
    assert list(tokens.semantic_tokens) == expected["semantic_tokens"].ravel().tolist()
    assert encoder.encode(reference.samples, semantic=False).semantic_tokens is None


def test_round_trip_through_our_decoder(encoder, expected):
    tokens = encoder.encode(expected["wav"])
    decoder = BiCodecDecoder.from_pretrained(ENCODE_DIR / "BiCodec")
    wav = decoder.decode(torch.tensor([tokens.semantic_tokens]), torch.tensor([tokens.global_tokens]))
    assert wav.shape == (1, 164 * 320)
    assert max_error(wav, expected["decoded_wav"][0]) < TOLERANCE


def test_command_line_prints_the_tokens(tmp_path, expected):
    audio = tmp_path / "reference.wav"
    audio.write_bytes(float_wav(expected["wav"]))
    result = subprocess.run(
        [sys.executable, "-m", "core.clone", str(ENCODE_DIR), str(audio), "--transcript", "Hello there."],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(result.stdout)
    assert out["global_tokens"] == expected["global_tokens"].ravel().tolist()
    assert out["semantic_tokens"] == expected["semantic_tokens"].ravel().tolist()
    assert out["transcript"] == "Hello there." and out["reference_seconds"] == pytest.approx(3.301, abs=1e-3)
    assert (
        "LOAD REPORT" not in result.stdout + result.stderr
    )  # HF's notes on the pre-training heads stay quiet


def test_command_line_refuses_bad_audio_with_a_reason(tmp_path):
    audio = tmp_path / "notes.txt"
    audio.write_text("not audio")
    result = subprocess.run(
        [sys.executable, "-m", "core.clone", str(ENCODE_DIR), str(audio)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "INVALID_AUDIO" in result.stderr and result.stdout == ""


# ---------------------------------------------------------------------------------------------- the file format


def test_encode_tree_is_the_released_files_tensor_names_and_shapes():
    manifest = json.loads((FIXTURES / "bicodec_manifest.json").read_text())
    shapes = {name: tuple(info["shape"]) for name, info in manifest["tensors"].items()}
    config = unwrap_config(manifest["config"])
    widths = SpeakerWidths.from_shapes(shapes)
    assert (
        widths.ecapa_channels,
        widths.ecapa_latent,
        widths.latent_dim,
        widths.perceiver_inner,
        widths.feedforward_inner,
    ) == (512, 1536, 128, 512, 341)
    with torch.device("meta"):
        speaker = SpeakerTokenizer(widths, config["speaker_encoder"]["fsq_levels"])
        semantic = SemanticTokenizer(config["encoder"], config["quantizer"])
    read = {f"speaker_encoder.{n}": tuple(t.shape) for n, t in speaker.state_dict().items()}
    read.update({n: tuple(t.shape) for n, t in semantic.state_dict().items()})
    assert {n: shapes.get(n) for n in read} == read
    encode_side = [n for n, info in manifest["tensors"].items() if not info["decode_path"]]
    unread = [
        n
        for n in encode_side
        if n not in read
        and not n.startswith(UNUSED_PREFIXES)
        and not n.endswith("num_batches_tracked")
        and not n.startswith(("postnet.", "quantizer.cluster_size"))
    ]
    assert unread == []


def test_a_decode_only_bicodec_cannot_clone(tmp_path):
    root = tmp_path / "model"
    shutil.copytree(ENCODE_DIR / "wav2vec2-large-xlsr-53", root / "wav2vec2-large-xlsr-53")
    (root / "BiCodec").mkdir()
    shutil.copy(ENCODE_DIR / "BiCodec" / "config.yaml", root / "BiCodec" / "config.yaml")
    with safe_open(str(ENCODE_DIR / "BiCodec" / "model.safetensors"), "pt") as f:
        decode_only = {
            n: f.get_tensor(n) for n in f.keys() if not n.startswith(("encoder.", "speaker_encoder.speaker"))
        }
    save_file(decode_only, str(root / "BiCodec" / "model.safetensors"))
    with pytest.raises(CloningUnavailable, match="lacks|missing"):
        ReferenceEncoder.from_pretrained(root)


def test_missing_wav2vec2_is_named(tmp_path):
    shutil.copytree(ENCODE_DIR / "BiCodec", tmp_path / "BiCodec")
    reason = cloning_unavailable_reason(tmp_path)
    assert reason is not None and "wav2vec2-large-xlsr-53" in reason
    with pytest.raises(CloningUnavailable, match="wav2vec2"):
        ReferenceEncoder.from_pretrained(tmp_path)


def test_the_demo_checkpoint_clones(demo_model_dir, expected):
    assert cloning_unavailable_reason(demo_model_dir) is None
    encoder = ReferenceEncoder.from_pretrained(demo_model_dir)
    tokens = encoder.encode(expected["wav"])
    assert len(tokens.global_tokens) == 32 and all(0 <= g < 4096 for g in tokens.global_tokens)
    assert len(tokens.semantic_tokens) == 164 and all(0 <= s < 8192 for s in tokens.semantic_tokens)
    assert encoder.encode(expected["wav"]) == tokens  # deterministic


def test_concurrent_encodes_give_each_reference_exactly_its_own_tokens(encoder, expected):
    """One shared encoder, several threads: every encode gives what that reference gives alone, round after round
    (the wav2vec2 layers of one call must never reach another's features)."""
    wav = expected["wav"].astype(np.float64)
    # Different lengths and content: a mix-up shows as other tokens or another length, never as a near miss.
    references = [
        wav[:20_000],
        wav[8_000:40_000],
        wav[::-1].copy(),
        wav[4_000:] * 0.5,
        wav[:33_333][::-1].copy(),
    ]
    alone = [encoder.encode(reference) for reference in references]
    assert len({tokens.semantic_tokens for tokens in alone}) == len(references)
    barrier = threading.Barrier(len(references))

    def encode(index: int):
        barrier.wait()  # start together so the model calls overlap
        return index, encoder.encode(references[index])

    rng = np.random.default_rng(7)
    with ThreadPoolExecutor(max_workers=len(references)) as pool:
        for _ in range(4):
            order = rng.permutation(len(references)).tolist()
            for index, tokens in pool.map(encode, order):
                assert tokens == alone[index], (
                    f"reference {index} got other tokens while encoding concurrently"
                )


# ---------------------------------------------------------------------------------------------- edge cases


def test_volume_normalisation_edges():
    quiet = np.full(100, 0.005)  # nothing above 0.01: only the peak scaling applies (upstream returns early)
    assert np.allclose(volume_normalize(quiet), np.full(100, 0.1))
    loud = np.sin(np.linspace(0, 200, 16000)) * 0.9
    out = volume_normalize(loud)
    assert np.max(np.abs(out)) <= 1.0 + 1e-12
    assert np.array_equal(
        reference_clip(np.arange(5.0), 12), np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1.0])
    )
    assert np.array_equal(reference_clip(np.arange(20.0), 12), np.arange(12.0))


def test_random_builder_at_the_released_size_writes_the_released_files_840_tensors():
    """The demo/bench builder and the loaders agree with the released file: every name, shape and dtype."""
    from core.bicodec import RELEASED_CONFIG
    from core.demo.random_bicodec import RELEASED_SPEAKER_WIDTHS, build_random_state_dict

    manifest = json.loads((FIXTURES / "bicodec_manifest.json").read_text())["tensors"]
    built = build_random_state_dict(RELEASED_CONFIG, 0, RELEASED_SPEAKER_WIDTHS)
    assert {n: (list(t.shape), str(t.dtype).removeprefix("torch.")) for n, t in built.items()} == {
        n: (info["shape"], info["dtype"]) for n, info in manifest.items()
    }


def test_the_released_wav2vec2_file_format_loads(tmp_path, expected):
    """The release ships wav2vec2 as `pytorch_model.bin`, a pickled Wav2Vec2ForPreTraining state dict (`wav2vec2.`
    prefix, positional-conv weight norm as weight_g / weight_v); the fixture holds the same tensors as safetensors.
    The pickle must load through the same path and give the same features."""
    from safetensors.torch import load_file

    from core.clone.semantic import Wav2VecFeatures

    source = ENCODE_DIR / "wav2vec2-large-xlsr-53"
    target = tmp_path / "wav2vec2-large-xlsr-53"
    target.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(source / name, target / name)
    tensors = load_file(str(source / "model.safetensors"))
    assert any(n.startswith("wav2vec2.") and n.endswith("weight_g") for n in tensors)
    torch.save(tensors, target / "pytorch_model.bin")
    features = Wav2VecFeatures.from_pretrained(target).features_from_input(
        torch.from_numpy(expected["w2v_input"])
    )
    assert max_error(features, expected["w2v_features"]) < TOLERANCE
