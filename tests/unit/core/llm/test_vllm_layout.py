"""The in-process layout's start path without vLLM: the variable vLLM reads is set before vLLM starts, and the
in-process engine refuses to build where it is not (vLLM would start its core in a process of its own). The engine
itself runs in the vLLM tier (tests/vllm/test_vllm_inprocess.py)."""

from __future__ import annotations

import os

import pytest

from core.llm.vllm_inproc import MULTIPROCESSING_ENV, InprocessLLM, apply_layout


def test_the_layout_sets_vllms_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESSING_ENV, raising=False)
    apply_layout("inprocess")
    assert os.environ[MULTIPROCESSING_ENV] == "0"
    apply_layout("process")
    assert os.environ[MULTIPROCESSING_ENV] == "1"


def test_the_in_process_engine_refuses_before_vllm_is_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROCESSING_ENV, "1")
    with pytest.raises(RuntimeError, match=f"{MULTIPROCESSING_ENV}=0"):
        InprocessLLM.from_engine_args(object())
