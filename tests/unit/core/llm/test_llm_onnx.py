"""The ONNX CPU engine beyond the shared contract (test_llm_transformers.py runs that over it): its float32 build
decodes as the HF model does, the grammar's id limits hold under every sampling, its build is cached with the digest
of the checkpoint it was made from, and the registry builds it from settings."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from core.llm import SamplingConfig, create_engine
from core.llm.onnx_convert import ConversionError, cached_model, ensure_onnx_model
from core.llm.onnx_engine import OnnxEngine
from core.llm.transformers_engine import grammar_head_ids_of
from core.tokens import IM_END, TokenKind, VocabLayout
from shared.settings import Settings
from tests.unit.core.llm.conftest import OnnxBuild


async def _ids(engine: OnnxEngine, prompt: list[int], sampling: SamplingConfig, rid: str = "r") -> list[int]:
    return [i async for delta in engine.stream(prompt, sampling, rid) for i in delta]


def _prompt(llm_dir: Path) -> list[int]:
    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    prompt = tokenizer.encode("<|task_controllable_tts|><|start_content|>hello there<|end_content|>")
    return prompt + tokenizer.convert_tokens_to_ids(
        ["<|start_style_label|>", "<|gender_0|>", "<|end_style_label|>"]
    )


async def test_the_float32_build_decodes_as_the_hf_model(llm_dir: Path, onnx_build: OnnxBuild) -> None:
    """Same cache, positions and head as HF: greedy ids equal `generate`'s over a prompt and 24 new ids."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    prompt = _prompt(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(str(llm_dir), dtype=torch.float32).eval()
    config = GenerationConfig(
        do_sample=False, max_new_tokens=24, min_new_tokens=24, eos_token_id=None, pad_token_id=0
    )
    with torch.inference_mode():
        expected = model.generate(torch.tensor([prompt]), generation_config=config)[0, len(prompt) :].tolist()
    engine = OnnxEngine.from_checkpoint(
        llm_dir, "fp32", cache_dir=onnx_build(llm_dir, "fp32"), grammar_head=False
    )
    # The reference's head stays in float32.
    assert engine._head_weight is not None and engine._head_weight.dtype == torch.float32
    try:
        assert await _ids(engine, prompt, SamplingConfig(temperature=0.0, max_tokens=24)) == expected
    finally:
        await engine.shutdown()


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingConfig(temperature=0.0, max_tokens=60),
        SamplingConfig(temperature=1.5, top_k=0, top_p=1.0, max_tokens=60, seed=1),
        SamplingConfig(temperature=1.2, top_k=50, top_p=0.95, max_tokens=60, seed=2, repetition_penalty=1.3),
        SamplingConfig(temperature=1.0, top_k=0, top_p=0.9, max_tokens=60, seed=3),
    ],
    ids=["greedy", "plain draw, hot", "top-k top-p, penalty", "top-p alone"],
)
async def test_no_id_outside_the_allowed_ranges_is_ever_emitted(
    llm_dir: Path, onnx_build: OnnxBuild, sampling: SamplingConfig
) -> None:
    """The grammar head keeps every id to the grammar's rows; a request's `allowed_token_ids` (clone mode: semantic
    ids and the stop id) narrows them further, whatever the sampling."""
    tokenizer: Any = AutoTokenizer.from_pretrained(str(llm_dir))  # transformers types its backends loosely
    layout = VocabLayout.from_tokenizer(tokenizer)
    head = set(grammar_head_ids_of(llm_dir) or ())
    stop = tokenizer.convert_tokens_to_ids(IM_END)
    semantic = tuple(int(i) for i in (layout.kinds == TokenKind.SEMANTIC).nonzero()[0])
    engine = OnnxEngine.from_checkpoint(llm_dir, "int8", cache_dir=onnx_build(llm_dir, "int8"), threads=1)
    try:
        assert engine.head_size == len(head)
        free = await _ids(engine, _prompt(llm_dir), sampling, "free")
        assert free and set(free) <= head
        clone = SamplingConfig(
            **{**sampling.__dict__, "allowed_token_ids": (*semantic, stop), "stop_token_ids": (stop,)}
        )
        ids = await _ids(engine, _prompt(llm_dir)[:5], clone, "clone")
        assert ids and set(ids) <= {*semantic, stop}
    finally:
        await engine.shutdown()


async def test_the_factory_builds_it_from_settings_and_says_so(
    llm_dir: Path, onnx_build: OnnxBuild, caplog: pytest.LogCaptureFixture
) -> None:
    cache = onnx_build(llm_dir, "int8")
    settings = Settings(engine="onnx", onnx_precision="int8", onnx_cache_dir=cache, onnx_threads=1)
    with caplog.at_level(logging.INFO, logger="core.llm.onnx_engine"):
        engine = create_engine("onnx", llm_dir, settings)
    try:
        assert isinstance(engine, OnnxEngine) and engine.name == "onnx" and engine.precision == "int8"
        assert any("LLM engine: onnx int8" in r.getMessage() for r in caplog.records)
        # A quantised build reads its head in float16 (half the bytes a step reads for it), as TTS_ONNX_HEAD_DTYPE says.
        assert engine._head_weight is not None and engine._head_weight.dtype == torch.float16
        assert len(await _ids(engine, [5, 17, 42], SamplingConfig(max_tokens=5, seed=0))) == 5
        with pytest.raises(NotImplementedError):
            await engine.sleep()
    finally:
        await engine.shutdown()


def test_the_build_is_cached_with_the_digest_of_its_checkpoint(
    llm_dir: Path, onnx_build: OnnxBuild, tmp_path: Path
) -> None:
    """A second start finds the build without building; a checkpoint touched but unchanged still matches (its hash is
    taken again and agrees); a changed checkpoint makes the build stale, and the next ensure rebuilds it."""
    cache = onnx_build(llm_dir, "fp32")
    copy = tmp_path / "LLM"
    copy.mkdir()
    for path in llm_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    built = ensure_onnx_model(copy, "fp32", tmp_path / "cache")
    manifest = json.loads((built.path / "source.json").read_text())
    assert manifest["digest"] == built.digest and "model.safetensors" in manifest["files"]
    stamp = built.model_file.stat().st_mtime_ns
    assert ensure_onnx_model(copy, "fp32", tmp_path / "cache").model_file.stat().st_mtime_ns == stamp

    config = copy / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    again = cached_model(copy, "fp32", tmp_path / "cache")
    assert again is not None and again.digest == built.digest

    config.write_text(json.dumps({**json.loads(config.read_text()), "rms_norm_eps": 1e-5}))
    assert cached_model(copy, "fp32", tmp_path / "cache") is None
    rebuilt = ensure_onnx_model(copy, "fp32", tmp_path / "cache")
    assert rebuilt.digest != built.digest and rebuilt.model_file.stat().st_mtime_ns != stamp
    assert cached_model(llm_dir, "fp32", cache) is not None  # the original's build is untouched


def test_a_folder_without_weights_is_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConversionError, match="no weights"):
        ensure_onnx_model(tmp_path, "int8")
    with pytest.raises(ValueError, match="accepted: int4, int8, fp32"):
        ensure_onnx_model(tmp_path, "int3")  # type: ignore[arg-type]


def test_serve_picks_the_onnx_engine_on_a_machine_without_a_gpu_where_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.llm import onnx_engine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(onnx_engine, "onnx_runtime_available", lambda: True)
    assert onnx_engine.pick_engine() == "onnx"
    monkeypatch.setattr(onnx_engine, "onnx_runtime_available", lambda: False)
    assert onnx_engine.pick_engine() == "transformers"
    monkeypatch.setattr(onnx_engine, "onnx_runtime_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert onnx_engine.pick_engine() == "transformers"
