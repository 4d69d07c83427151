"""`POST /v1/tts/normalize` plans its text as a text step of the caller's key, in the engine's step gate (the hostile
round's Markdown attack: a free normalisation of 40,000 `![` after another slowed another key's first audio many
times over, services/device/key_share.py `TextTurns`), and still answers the whole text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import create_app
from services.deployment.runtime import ModelRuntime
from shared.settings import Settings
from tests.conftest import wait_in_portal

KEY = "normalize-turns-key"
ATTACK_LINE = "![" * 20_000


@pytest.fixture(scope="module")
def served(
    demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, ModelRuntime]]:
    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=True,
        api_keys=KEY,
        warmup=False,
        log_json=False,
        sr_enabled=False,
        voice_dir=tmp_path_factory.mktemp("voices"),
        jobs_dir=tmp_path_factory.mktemp("jobs"),
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        yield client, runtime


def test_the_markdown_attack_line_is_planned_in_the_engine_s_turns_and_answered_whole(
    served: tuple[TestClient, ModelRuntime],
) -> None:
    client, runtime = served
    gate = runtime.engine.step_gate  # the transformers engine on a CPU
    before = {owner: gate.usage(owner) for owner in gate.account._used}  # noqa: SLF001 - the account's owners
    answer = client.post(
        "/v1/tts/normalize", headers={"Authorization": f"Bearer {KEY}"}, json={"text": ATTACK_LINE}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["normalized"] == ATTACK_LINE
    charged = {owner for owner in gate.account._used if gate.usage(owner) > before.get(owner, 0.0)}  # noqa: SLF001
    assert len(charged) == 1 and None not in charged  # the caller's key, charged its pieces' seconds
