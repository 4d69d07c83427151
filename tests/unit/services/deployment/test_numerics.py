"""The codec/SR float numerics (core/numerics.py) are set when the runtime is built, locally and on Modal."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from core.numerics import model_numerics
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings

OFF = {
    "cuda_matmul_tf32": False,
    "cudnn_conv_tf32": False,
    "cuda_matmul_fp16_reduced_reduction": False,
    "cudnn_benchmark": False,
    "float32_matmul_precision": "highest",
}


@pytest.fixture
def loose_numerics() -> Iterator[None]:
    """Start from the opposite of what the runtime sets (TF32 everywhere, fp16 reductions, autotuning on); restore
    afterwards."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
    )
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    assert model_numerics() != OFF
    yield
    matmul, conv, benchmark, precision, fp16_reduction = saved
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = fp16_reduction
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = conv
    torch.backends.cudnn.benchmark = benchmark
    torch.set_float32_matmul_precision(precision)


def test_building_the_runtime_turns_tf32_and_autotuning_off(loose_numerics: None, caplog) -> None:
    with caplog.at_level("INFO", logger="services.deployment.runtime"):
        ModelRuntime(Settings(auth_enabled=False, log_json=False))  # nothing loaded: the numerics come first
    assert model_numerics() == OFF
    assert any(record.getMessage() == "model numerics" for record in caplog.records)


def test_the_modal_container_sets_them_in_prepare(
    loose_numerics: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.deployment.modal_deployment import ContainerLifecycle, ModalConfig

    for key in list(os.environ):
        if key.startswith("TTS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TTS_API_KEYS", "k1")
    ContainerLifecycle(
        ModalConfig(max_containers=1), stop_hook=lambda: None
    ).prepare()  # the real ModelRuntime, nothing loaded
    assert model_numerics() == OFF
