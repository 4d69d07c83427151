"""An operator's keys in a real PostgreSQL, reached directly or through Supabase's REST API: the command line and the
admin API create (the secret shown once), list, change, top up and revoke keys, each change audited in the request
log; a key reads its own balance and limits (and ElevenLabs' SDK reads them as its subscription).

The Supabase runs talk to tests/integration/fake_postgrest.py, a stand-in for the hosted API that turns each
PostgREST request into SQL on the same test database (its tables and deploy/sql functions), so the store's filters,
updates, paging and RPC calls meet PostgreSQL's real behaviour; only the HTTP layer is not Supabase's own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from elevenlabs.client import ElevenLabs

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.integration.conftest import keyed_env
from tests.integration.fake_postgrest import FakePostgrest, fake_postgrest

pytestmark = pytest.mark.integration
ADMIN = "admin-key-for-tests-0123456789"
SERVICE_KEY = "sb_secret_test-service-key-0123456789"


@dataclass
class Backend:
    """A key store's settings (TTS_* names), and the Supabase stand-in behind it where there is one."""

    settings: dict[str, str]
    supabase: FakePostgrest | None = None

    def paths(self) -> set[tuple[str, str]]:
        """What the store asked Supabase for: (method, path)."""
        return {(method, path) for method, path, _ in self.supabase.seen} if self.supabase else set()


@pytest.fixture(scope="module", params=["postgres", "supabase"])
def backend(request: pytest.FixtureRequest, pg_dsn: str) -> Iterator[Backend]:
    if request.param == "postgres":
        yield Backend(
            {"TTS_KEY_BACKEND": "postgres", "TTS_DATABASE_URL": pg_dsn, "TTS_REQUEST_LOG_SINK": "postgres"}
        )
        return
    with fake_postgrest(pg_dsn, SERVICE_KEY) as fake:
        settings = {
            "TTS_KEY_BACKEND": "supabase",
            "TTS_SUPABASE_URL": fake.url,
            "TTS_SUPABASE_KEY": SERVICE_KEY,
        }
        yield Backend(settings | {"TTS_REQUEST_LOG_SINK": "supabase"}, fake)


def cli(backend: Backend, *args: str) -> tuple[int, object, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_") or k.startswith("TTS_TEST_")}
    env |= backend.settings
    done = subprocess.run(
        [sys.executable, "-m", "services.access.key_cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, json.loads(done.stdout) if done.returncode == 0 else None, done.stderr


async def audit_rows(dsn: str, key_id: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT speaker, text_length FROM tts_requests WHERE key_id = $1 AND transport = 'admin' "
            "ORDER BY created_at",
            key_id,
        )
    finally:
        await conn.close()
    return [(r["speaker"], r["text_length"]) for r in rows]


def test_the_command_line_manages_keys_and_audits_each_change(backend: Backend, pg_dsn: str) -> None:
    status, created, err = cli(
        backend, "create", "--owner", "Acme", "--credits", "1000", "--rate-limit", "120"
    )
    assert status == 0, err
    assert (
        isinstance(created, dict) and created["key"].startswith("tts_") and created["credit_balance"] == 1000
    )
    key_id = created["key_id"]
    status, listed, err = cli(backend, "list")
    assert status == 0, err
    assert isinstance(listed, list)
    mine = next(k for k in listed if k["key_id"] == key_id)
    assert "key" not in mine and "key_hash" not in mine and mine["rate_limit_per_minute"] == 120
    expires = "2030-01-02T03:04:05+00:00"
    status, changed, err = cli(
        backend, "set", key_id, "--max-concurrent", "8", "--rate-limit", "default", "--expires", expires
    )
    assert status == 0, err
    assert isinstance(changed, dict)
    assert (changed["max_concurrent"], changed["rate_limit_per_minute"]) == (8, None)
    assert datetime.fromisoformat(changed["expires_at"]) == datetime.fromisoformat(expires)
    status, topped, err = cli(backend, "top-up", key_id, "500")
    assert status == 0 and isinstance(topped, dict) and topped["credit_balance"] == 1500, err
    status, revoked, err = cli(backend, "revoke", key_id)
    assert status == 0 and isinstance(revoked, dict) and revoked["status"] == "revoked", err
    # Refused commands say why and change nothing.
    assert cli(backend, "top-up", key_id, "0")[0] == 2
    status, _, err = cli(backend, "show", "key_nobody")
    assert status == 2 and "No key has the id" in err
    assert asyncio.run(audit_rows(pg_dsn, key_id)) == [
        ("keys.create", 0),
        ("keys.update", 0),
        ("keys.top_up", 500),
        ("keys.revoke", 0),
    ]
    if (
        backend.supabase is not None
    ):  # each step went through the REST API: table calls, the atomic top-up, the log
        assert {
            ("POST", "/rest/v1/api_keys"),
            ("GET", "/rest/v1/api_keys"),
            ("PATCH", "/rest/v1/api_keys"),
            ("POST", "/rest/v1/rpc/tts_refund_credits"),
            ("POST", "/rest/v1/rpc/tts_store_requests"),
        } <= backend.paths()


def test_supabase_lists_every_key_past_its_max_rows(backend: Backend) -> None:
    """Supabase answers at most "Max rows" per request whatever was asked: the list pages on to an empty page."""
    if backend.supabase is None:
        pytest.skip("Supabase's row cap only")
    for _ in range(3):
        assert cli(backend, "create", "--owner", "Paged")[0] == 0
    status, listed, err = cli(backend, "list")
    assert status == 0 and isinstance(listed, list), err
    backend.supabase.max_rows = max(1, len(listed) // 3)
    status, paged, err = cli(backend, "list")
    assert status == 0 and paged == listed, err
    gets = [
        q for m, p, q in backend.supabase.seen if (m, p) == ("GET", "/rest/v1/api_keys") and "offset" in q
    ]
    assert len(gets) >= 4  # three pages or more, then the empty one


@pytest.fixture(scope="module")
def admin_server(
    backend: Backend, pg_dsn: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = keyed_env(pg_dsn, **backend.settings, TTS_ADMIN_KEY=ADMIN, TTS_WARMUP="false")
    if backend.supabase is not None:
        env.pop("TTS_DATABASE_URL")  # everything through Supabase's REST API, as a deployment without a DSN
    server = start_server(demo_model_dir, tmp_path_factory.mktemp("key-admin") / "server.log", env)
    yield server
    stop_server(server)


def test_the_admin_api_and_a_key_reading_its_own_balance(
    admin_server: RunningServer, backend: Backend, pg_dsn: str
) -> None:
    base = admin_server.base_url
    admin = {"X-Admin-Key": ADMIN}
    assert httpx.post(f"{base}/v1/admin/keys", json={"owner": "x"}).status_code == 403  # as every admin route
    assert httpx.get(f"{base}/v1/admin/keys", headers={"X-Admin-Key": "wrong"}).status_code == 403
    created = httpx.post(
        f"{base}/v1/admin/keys",
        headers=admin,
        json={"owner": "Agent Co", "credit_balance": 300, "max_concurrent": 2},
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["key_id"]
    own = httpx.get(f"{base}/v1/tts/key", headers={"Authorization": f"Bearer {key}"}).json()
    assert (own["key_id"], own["credit_balance"], own["max_concurrent"]) == (key_id, 300, 2)
    assert own["rate_limit_per_minute"] == 60  # the service default applies

    refused = httpx.patch(f"{base}/v1/admin/keys/{key_id}", headers=admin, json={"max_concurrent": -1})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "VALIDATION_ERROR"
    unknown = httpx.patch(f"{base}/v1/admin/keys/{key_id}", headers=admin, json={"key_hash": "0" * 64})
    assert unknown.status_code == 400 and "Unknown field" in unknown.json()["error"]["message"]
    topped = httpx.post(f"{base}/v1/admin/keys/{key_id}/credits", headers=admin, json={"amount": 700})
    assert topped.status_code == 200 and topped.json()["credit_balance"] == 1000
    listed = httpx.get(f"{base}/v1/admin/keys", headers=admin).json()["keys"]
    assert any(k["key_id"] == key_id and "key" not in k for k in listed)

    # ElevenLabs' own client reads the key's credits as its subscription.
    subscription = ElevenLabs(api_key=key, base_url=base).user.subscription.get()
    assert subscription.character_limit - subscription.character_count == 1000

    gone = httpx.delete(f"{base}/v1/admin/keys/{key_id}", headers=admin)
    assert gone.status_code == 200 and gone.json()["status"] == "revoked"
    after = httpx.get(f"{base}/v1/tts/key", headers={"Authorization": f"Bearer {key}"})
    assert after.status_code == 401  # this process dropped its cached record at the change
    missing = httpx.get(f"{base}/v1/admin/keys/key_nobody", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    for _ in range(50):  # the request log writes in the background (TTS_REQUEST_LOG_FLUSH_S): poll briefly
        rows = asyncio.run(audit_rows(pg_dsn, key_id))
        if len(rows) == 3:
            break
        time.sleep(0.2)
    assert rows == [("keys.create", 0), ("keys.top_up", 700), ("keys.revoke", 0)]
    if backend.supabase is not None:
        assert ("POST", "/rest/v1/rpc/tts_lookup_api_key") in backend.paths()
