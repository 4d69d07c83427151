"""BiCodec decoder: matches upstream on the fixture, loads the released layout, refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from core.bicodec import (
    BiCodecDecoder,
    BiCodecLoadError,
    decode_tensor_shapes,
    is_skipped_tensor,
    plan_decode_tensors,
)
from core.demo.random_bicodec import DEMO_CONFIG, build_random_state_dict, write_random_checkpoint
from tests.tiny_models import tiny_bicodec

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures"
TINY_DIR = FIXTURES / "bicodec_tiny"
MANIFEST = FIXTURES / "bicodec_manifest.json"


@pytest.fixture(scope="module")
def tiny() -> BiCodecDecoder:
    return tiny_bicodec()


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    if not (TINY_DIR / "expected.npz").is_file():
        pytest.skip(f"BiCodec expected outputs not found at {TINY_DIR}")
    return dict(np.load(TINY_DIR / "expected.npz"))


@pytest.fixture(scope="module")
def manifest() -> dict:
    if not MANIFEST.is_file():
        pytest.skip(f"BiCodec manifest not found at {MANIFEST}")
    return json.loads(MANIFEST.read_text())


def _copy_fixture(tmp_path: Path, edit) -> Path:
    """A copy of the tiny checkpoint with `edit(tensors)` applied to its tensors."""
    out = tmp_path / "BiCodec"
    out.mkdir()
    (out / "config.yaml").write_text((TINY_DIR / "config.yaml").read_text())
    tensors = load_file(TINY_DIR / "model.safetensors")
    edit(tensors)
    save_file(tensors, out / "model.safetensors")
    return out


# ---- matches the upstream implementation ----------------------------------------------------------------


def test_fixture_decode_matches_upstream(tiny: BiCodecDecoder, expected: dict) -> None:
    semantic = torch.from_numpy(expected["semantic"])
    wav = tiny.decode(semantic, torch.from_numpy(expected["global_tokens"]))
    assert wav.dtype == torch.float32
    assert wav.shape == (2, semantic.shape[1] * 320)
    np.testing.assert_allclose(wav.numpy(), expected["wav"][:, 0], atol=1e-4, rtol=0)


def test_fixture_latents_and_speaker_vector_match(tiny: BiCodecDecoder, expected: dict) -> None:
    z_q = tiny.quantize_semantic(torch.from_numpy(expected["semantic"]))
    np.testing.assert_allclose(z_q.numpy(), expected["z_q"], atol=1e-5, rtol=0)
    flat_globals = torch.from_numpy(expected["global_tokens"][:, 0])  # [B, 32] works as well as [B, 1, 32]
    np.testing.assert_allclose(
        tiny.speaker_vector(flat_globals).numpy(), expected["d_vector"], atol=1e-5, rtol=0
    )


def test_cached_speaker_vector_path_equals_full_decode(tiny: BiCodecDecoder, expected: dict) -> None:
    semantic = torch.from_numpy(expected["semantic"])
    globals_ = torch.from_numpy(expected["global_tokens"])
    d = tiny.speaker_vector(globals_)
    torch.testing.assert_close(tiny.decode_with_speaker(semantic, d), tiny.decode(semantic, globals_))


def test_attributes(tiny: BiCodecDecoder) -> None:
    assert (tiny.sample_rate, tiny.hop_length) == (16000, 320)
    assert tiny.device == torch.device("cpu")
    assert tiny.d_vector_dim == 48 and tiny.global_token_count == 32
    assert not any(name.endswith(("weight_g", "weight_v")) for name in tiny.state_dict()), (
        "weight norm folded"
    )


# ---- the released file layout ----------------------------------------------------------------------------


def test_tree_from_released_config_has_exactly_the_decode_tensors(manifest: dict) -> None:
    wanted = {n: tuple(t["shape"]) for n, t in manifest["tensors"].items() if t["decode_path"]}
    assert len(wanted) == 319
    assert decode_tensor_shapes(manifest["config"]) == wanted


def test_skip_list_accounts_for_every_released_tensor(manifest: dict) -> None:
    tensors = manifest["tensors"]
    assert len(tensors) == 840
    unaccounted = [n for n, t in tensors.items() if not t["decode_path"] and not is_skipped_tensor(n)]
    assert unaccounted == []
    assert [n for n, t in tensors.items() if t["decode_path"] and is_skipped_tensor(n)] == []
    file_shapes = {n: tuple(t["shape"]) for n, t in tensors.items()}
    needed = plan_decode_tensors(file_shapes, decode_tensor_shapes(manifest["config"]))
    assert sorted(needed) == sorted(n for n, t in tensors.items() if t["decode_path"])


def test_released_config_receptive_field_is_68_tokens(manifest: dict) -> None:
    with torch.device("meta"):
        model = BiCodecDecoder(manifest["config"])
    assert model.receptive_field_tokens == 68


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    if not TINY_DIR.is_dir():
        pytest.skip("BiCodec fixture absent")
    bad = _copy_fixture(tmp_path, lambda t: t.pop("decoder.model.2.block.1.weight_v"))
    with pytest.raises(
        BiCodecLoadError, match=r"missing decode tensor.*decoder\.model\.2\.block\.1\.weight_v"
    ):
        BiCodecDecoder.from_pretrained(bad)


def test_wrong_shape_names_tensor_and_both_shapes(tmp_path: Path) -> None:
    if not TINY_DIR.is_dir():
        pytest.skip("BiCodec fixture absent")
    bad = _copy_fixture(tmp_path, lambda t: t.update({"prenet.linear.bias": torch.zeros(47)}))
    with pytest.raises(BiCodecLoadError, match=r"prenet\.linear\.bias has shape \[47\], expected \[48\]"):
        BiCodecDecoder.from_pretrained(bad)


def test_unknown_tensor_is_refused(tmp_path: Path) -> None:
    if not TINY_DIR.is_dir():
        pytest.skip("BiCodec fixture absent")
    bad = _copy_fixture(tmp_path, lambda t: t.update({"decoder.model.9.alpha": torch.ones(1, 4, 1)}))
    with pytest.raises(BiCodecLoadError, match=r"unexpected tensor.*decoder\.model\.9\.alpha"):
        BiCodecDecoder.from_pretrained(bad)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(BiCodecLoadError, match="model.safetensors: missing"):
        BiCodecDecoder.from_pretrained(tmp_path)
    # Without config.yaml the released config is assumed; weights of another size say what to copy.
    if TINY_DIR.is_dir():
        (tmp_path / "model.safetensors").write_bytes((TINY_DIR / "model.safetensors").read_bytes())
        with pytest.raises(
            BiCodecLoadError, match="config.yaml: missing, and the weights are not the released"
        ):
            BiCodecDecoder.from_pretrained(tmp_path)


# ---- random-weight checkpoints (the demo model) ----------------------------------------------------------


def test_random_checkpoint_round_trips(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path / "BiCodec", DEMO_CONFIG, seed=3)
    config = yaml.safe_load((tmp_path / "BiCodec" / "config.yaml").read_text())
    assert config == {"audio_tokenizer": DEMO_CONFIG}
    with safe_open(tmp_path / "BiCodec" / "model.safetensors", "pt") as f:
        names = set(f.keys())
    assert "quantizer.out_project.weight_g" in names and "quantizer.in_project.weight_v" in names
    assert any(is_skipped_tensor(n) for n in names), "encoder-side tensors exercise the skip list"

    model = BiCodecDecoder.from_pretrained(tmp_path / "BiCodec")
    gen = torch.Generator().manual_seed(0)
    wav = model.decode(
        torch.randint(0, 8192, (1, 60), generator=gen), torch.randint(0, 4096, (1, 32), generator=gen)
    )
    assert wav.shape == (1, 60 * 320)
    assert torch.isfinite(wav).all()
    rms = wav.pow(2).mean().sqrt().item()
    assert 0.02 < rms < 0.5, f"demo noise should be audible but not clipped, rms={rms}"
    assert (wav.abs() > 0.99).float().mean() < 0.01


def test_random_state_dict_is_deterministic_per_seed() -> None:
    a, b, c = (build_random_state_dict(DEMO_CONFIG, s) for s in (7, 7, 8))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["decoder.model.0.weight_v"], c["decoder.model.0.weight_v"])


# ---- input validation -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> BiCodecDecoder:
    out = tmp_path_factory.mktemp("demo") / "BiCodec"
    write_random_checkpoint(out, DEMO_CONFIG, seed=0)
    return BiCodecDecoder.from_pretrained(out)


@pytest.mark.parametrize(
    ("semantic", "globals_", "message"),
    [
        (
            [[1, 8192]],
            [list(range(32))],
            "semantic token value 8192 out of range; accepted values are 0..8191",
        ),
        ([[-1, 5]], [list(range(32))], "semantic token value -1 out of range"),
        (
            [[1, 2]],
            [[4096] + list(range(31))],
            "global token value 4096 out of range; accepted values are 0..4095",
        ),
        ([[1, 2]], [list(range(31))], "exactly 32"),
        ([[1, 2]], [list(range(33))], "exactly 32"),
        ([[0.5, 2.0]], [list(range(32))], "must be integers"),
        (torch.zeros(1, 0, dtype=torch.long), [list(range(32))], "T >= 1"),
    ],
)
def test_bad_tokens_raise_value_error(demo: BiCodecDecoder, semantic, globals_, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        demo.decode(torch.as_tensor(semantic), torch.as_tensor(globals_))


def test_bad_d_vector_shape_raises(demo: BiCodecDecoder) -> None:
    with pytest.raises(ValueError, match="d_vector must have shape"):
        demo.decode_with_speaker(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 7))
