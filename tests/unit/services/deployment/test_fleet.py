"""A Modal fleet's start (services/deployment/fleet.py through `container_settings`): one container holds the per-GPU
goal with the engine to match, and more than one container refuses per-container state that would fork, naming the
fix, unless TTS_MODAL_FORKED_STATE accepts it by name (then the start-up log says what forks)."""

from __future__ import annotations

import logging
import os

import pytest

from services.deployment import fleet
from services.deployment import modal_deployment as deployment
from services.deployment.modal_deployment import DeploymentConfigError, ModalConfig

SHARED = {
    "TTS_KEY_BACKEND": "postgres",
    "TTS_DATABASE_URL": "postgresql://u@db/tts",
    "TTS_REDIS_URL": "redis://cache:6379/0",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("TTS_"):
            monkeypatch.delenv(key)
    return monkeypatch


def _set(env: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        env.setenv(key, value)


def test_one_container_holds_the_per_gpu_goal_and_the_engine_runs_every_input() -> None:
    cfg = ModalConfig()
    assert cfg.max_inputs >= fleet.GOAL_STREAMS_PER_GPU == 250
    assert fleet.STEADY_STREAMS_PER_GPU < cfg.target_inputs < cfg.max_inputs
    assert fleet.engine_seqs_for(cfg.max_inputs) == 512


def test_the_container_sets_the_engines_sequences_from_its_inputs(env: pytest.MonkeyPatch) -> None:
    _set(env, SHARED)
    assert deployment.container_settings(ModalConfig()).llm.max_num_seqs == 512
    assert (
        deployment.container_settings(ModalConfig(max_inputs=300, target_inputs=100)).llm.max_num_seqs == 600
    )
    env.setenv("TTS_MAX_NUM_SEQS", "1024")  # more is the operator's to give
    assert deployment.container_settings(ModalConfig()).llm.max_num_seqs == 1024
    env.setenv("TTS_MAX_NUM_SEQS", "256")
    with pytest.raises(
        DeploymentConfigError, match=r"TTS_MAX_NUM_SEQS=256 is below .* = 512. Set TTS_MAX_NUM_SEQS"
    ):
        deployment.container_settings(ModalConfig())


def test_a_fleet_with_shared_stores_starts(env: pytest.MonkeyPatch) -> None:
    _set(env, {**SHARED, "TTS_CREDITS_ENABLED": "true"})
    settings = deployment.container_settings(ModalConfig(max_containers=10))
    assert fleet.forked_state(settings) == []


@pytest.mark.parametrize(
    ("without", "extra", "name", "fix"),
    [
        (
            "TTS_KEY_BACKEND",
            {"TTS_API_KEYS": "k1", "TTS_CREDITS_ENABLED": "true"},
            "credits",
            "TTS_KEY_BACKEND=postgres",
        ),
        ("TTS_REDIS_URL", {}, "limits", "TTS_REDIS_URL"),
    ],
)
def test_a_fleet_refuses_per_container_state_naming_the_fix(
    env: pytest.MonkeyPatch, without: str, extra: dict[str, str], name: str, fix: str
) -> None:
    _set(env, {k: v for k, v in SHARED.items() if k != without} | extra)
    with pytest.raises(DeploymentConfigError) as refused:
        deployment.container_settings(ModalConfig(max_containers=10))
    message = str(refused.value)
    assert f"{name}:" in message and fix in message and f"TTS_MODAL_FORKED_STATE={name}" in message
    # One container forks nothing: the same settings start.
    deployment.container_settings(ModalConfig(max_containers=1, min_containers=1))


def test_jobs_and_continuity_without_a_database_are_refused_on_a_fleet(env: pytest.MonkeyPatch) -> None:
    _set(env, {"TTS_API_KEYS": "k1", "TTS_REDIS_URL": "redis://cache:6379/0"})
    with pytest.raises(DeploymentConfigError) as refused:
        deployment.container_settings(ModalConfig(max_containers=2))
    message = str(refused.value)
    assert "jobs:" in message and "TTS_DATABASE_URL, or TTS_JOBS_ENABLED=false" in message
    assert "continuity:" in message and "TTS_MODAL_FORKED_STATE=jobs,continuity" in message
    env.setenv("TTS_JOBS_ENABLED", "false")
    with pytest.raises(DeploymentConfigError, match="continuity:") as refused:
        deployment.container_settings(ModalConfig(max_containers=2))
    assert "jobs:" not in str(refused.value)


def test_an_accepted_fork_starts_and_is_named_in_the_start_up_log(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _set(env, {k: v for k, v in SHARED.items() if k != "TTS_REDIS_URL"})
    cfg = ModalConfig.from_env({"TTS_MODAL_FORKED_STATE": "Limits"})
    assert cfg.forked_state == ("limits",)
    with caplog.at_level(logging.WARNING, logger="app"):
        deployment.container_settings(cfg)
    accepted = [r for r in caplog.records if getattr(r, "forked_state", None) == "limits"]
    assert accepted and "TTS_MODAL_FORKED_STATE" in accepted[0].getMessage()
    assert cfg.as_env()["TTS_MODAL_FORKED_STATE"] == "limits"  # the container sees the same acceptance


def test_an_unknown_forked_state_name_stops_the_deploy() -> None:
    with pytest.raises(DeploymentConfigError, match="TTS_MODAL_FORKED_STATE names voices; accepted: credits"):
        ModalConfig.from_env({"TTS_MODAL_FORKED_STATE": "limits,voices"})
