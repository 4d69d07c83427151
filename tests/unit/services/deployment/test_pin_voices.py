"""Pinning a fine-tune's speakers: one generation each, globals stored, later prompts carry the trained sequence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.voices import VoiceRegistry
from processing.prompt import build_prompt
from tests.conftest import PROJECT_ROOT, wait_in_portal
from tests.finetune import finetune_layout


def test_pinning_writes_globals_and_the_prompt_becomes_the_trained_sequence(
    demo_model_dir: Path, tmp_path: Path
):
    root = finetune_layout(demo_model_dir, tmp_path / "ft", root_config=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env.update({"TTS_FINETUNE_SPEAKERS": "Asha,Bittu", "TTS_DEVICE": "cpu"})
    done = subprocess.run(
        [sys.executable, "-m", "services.deployment.pin_voices", str(root)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pinned Asha" in done.stdout and "pinned Bittu" in done.stdout
    document = json.loads((root / "voices.json").read_text())
    registry = VoiceRegistry.from_dict(document)
    asha = registry.resolve("Asha")
    assert asha.kind == "prompt_prefix" and len(asha.global_tokens) == 32
    prompt, mode = build_prompt("Hi.", asha)
    globals_str = "".join(f"<|bicodec_global_{g}|>" for g in asha.global_tokens)
    assert prompt == (
        f"<|task_tts|><|start_content|>Asha: Hi.<|end_content|><|start_global_token|>{globals_str}"
        "<|end_global_token|><|start_semantic_token|>"
    )  # the trained sequence continues with semantics
    assert mode == "clone"


def test_the_admin_route_pins_live_voices(demo_model_dir: Path, tmp_path: Path) -> None:

    from fastapi.testclient import TestClient

    from api import create_app
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings

    root = finetune_layout(demo_model_dir, tmp_path / "ft", root_config=False)
    settings = Settings(
        model_dir=root,
        auth_enabled=False,
        warmup=False,
        log_json=False,
        device="cpu",
        sr_enabled=False,
        admin_key="admin-secret",
        finetune_speakers="Asha,Bittu",
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        url = "/v1/tts/admin/voices/pin"
        assert client.post(url, json={}).status_code == 403
        bad = client.post(url, json={"voices": ["Nobody"]}, headers={"X-Admin-Key": "admin-secret"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_SPEAKER"
        done = client.post(
            url, json={"voices": ["Asha"], "save": True}, headers={"X-Admin-Key": "admin-secret"}
        )
        assert done.status_code == 200, done.text
        body = done.json()
        assert list(body["pinned"]) == ["Asha"] and len(body["pinned"]["Asha"]) == 32
        assert runtime.voices.resolve("Asha").global_tokens == tuple(body["pinned"]["Asha"])  # live at once
        assert runtime.voices.resolve("Bittu").global_tokens is None
        assert json.loads((root / "voices.json").read_text()) == body["voices_json"]
        spoken = client.post("/v1/tts/generate", json={"text": "Hi.", "speaker": "Asha", "max_tokens": 5})
        assert spoken.status_code == 200


def test_voices_pinned_at_start_skip_the_global_token_steps(demo_model_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from api import create_app
    from services.deployment.runtime import ModelRuntime
    from shared.settings import Settings

    settings = Settings(
        model_dir=demo_model_dir,
        auth_enabled=False,
        log_json=False,
        device="cpu",
        sr_enabled=False,
        pin_voices_at_start=True,
    )
    runtime = ModelRuntime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        wait_in_portal(client, lambda: runtime.ready)
        assert all(
            v.global_tokens is not None and len(v.global_tokens) == 32 for v in runtime.voices.voices.values()
        )
        spoken = client.post("/v1/tts/generate", json={"text": "Hi.", "speaker": "default", "max_tokens": 5})
        assert spoken.status_code == 200
