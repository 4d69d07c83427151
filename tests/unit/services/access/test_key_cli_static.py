"""The key command line on the static backend: it keeps keys in TTS_API_KEYS_FILE, which the server reads at start."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from services.access.authenticator import Authenticator
from services.access.key_cli import main
from services.keys.records import AuthError
from services.keys.stores import StaticKeyStore
from shared.settings import get_settings


@pytest.fixture
def keys_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys.json"
    monkeypatch.setenv("TTS_KEY_BACKEND", "static")
    monkeypatch.setenv("TTS_API_KEYS_FILE", str(path))
    monkeypatch.setenv("TTS_REQUEST_LOG_SINK", "none")
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    status = main(list(argv))
    out = capsys.readouterr().out
    return status, json.loads(out) if status == 0 else None


def test_keys_made_and_changed_in_the_file_are_what_the_server_reads(
    keys_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, created = run(capsys, "create", "--owner", "home", "--credits", "50")
    assert status == 0 and isinstance(created, dict)
    assert created["key"] not in keys_file.read_text()  # only its hash is kept
    key_id = created["key_id"]
    assert run(capsys, "top-up", key_id, "25")[1]["credit_balance"] == 75  # type: ignore[index]
    assert run(capsys, "set", key_id, "--credits", "unlimited")[1]["credit_balance"] is None  # type: ignore[index]

    store = StaticKeyStore.from_file(keys_file)
    record = asyncio.run(Authenticator(store).authenticate(created["key"]))
    assert (record.key_id, record.owner, record.credit_balance) == (key_id, "home", None)

    assert run(capsys, "revoke", key_id)[0] == 0
    with pytest.raises(AuthError):
        asyncio.run(Authenticator(StaticKeyStore.from_file(keys_file)).authenticate(created["key"]))


def test_a_refused_command_says_why(keys_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, created = run(capsys, "create", "--owner", "home")
    assert status == 0 and isinstance(created, dict)
    assert main(["top-up", created["key_id"], "10"]) == 2  # unlimited: set a balance instead
    assert "no balance" in capsys.readouterr().err
    assert main(["show", "key_nobody"]) == 2


def test_a_key_file_it_cannot_use_is_said_not_a_traceback(
    keys_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file.write_text("{not json")
    assert main(["list"]) == 2
    assert f"TTS_API_KEYS_FILE={keys_file} is not JSON" in capsys.readouterr().err
