"""API keys: hashing, header extraction, error codes, TTL cache (fake clock) and log hygiene."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from services.access import (
    ApiKeyRecord,
    Authenticator,
    AuthError,
    KeyConfigError,
    KeyStoreUnavailable,
    StaticKeyStore,
    build_authenticator,
    derive_key_id,
    hash_key,
)
from shared.settings import Settings

KEY = "tts_unit-test-key-0123456789"
KEY_HASH = hashlib.sha256(KEY.encode()).hexdigest()


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FlakyStore(StaticKeyStore):
    """A static store that can be switched to fail like an unreachable database."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.down = False
        self.calls = 0

    async def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise KeyStoreUnavailable("down")
        return await super().get_by_hash(key_hash)


def make_auth(store, ttl_s: float = 30.0, **kwargs) -> tuple[Authenticator, FakeClock]:
    clock = FakeClock()
    return Authenticator(store, ttl_s, clock=clock, **kwargs), clock


async def expect_error(auth: Authenticator, key: str | None) -> AuthError:
    with pytest.raises(AuthError) as info:
        await auth.authenticate(key)
    return info.value


def test_keys_are_stored_only_as_sha256_and_never_printed() -> None:
    store = StaticKeyStore.from_plain_keys([KEY])
    record = asyncio.run(store.get_by_hash(KEY_HASH))
    assert record is not None and record.key_hash == KEY_HASH == hash_key(KEY)
    assert KEY not in repr(record) and KEY_HASH not in repr(record)
    assert record.key_id == derive_key_id(KEY) and record.key_id[4:] not in KEY_HASH


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": f"Bearer {KEY}"}, KEY),
        ({"authorization": f"bearer   {KEY}  "}, KEY),
        ({"X-API-Key": KEY}, KEY),
        ({"x-api-key": f" {KEY} "}, KEY),
        ({"Authorization": "Basic Zm9vOmJhcg==", "X-API-Key": KEY}, KEY),
        ({"Authorization": "Bearer "}, None),
        ({"X-API-Key": "   "}, None),
        ({}, None),
    ],
)
def test_extract_key_from_bearer_or_x_api_key(headers: dict[str, str], expected: str | None) -> None:
    assert Authenticator.extract_key(headers) == expected


async def test_each_outcome_has_its_code_and_status() -> None:
    now = datetime.now(UTC)
    store = StaticKeyStore()
    store.add_plain_key(KEY, key_id="good")
    store.add_plain_key("expired-key", key_id="old", expires_at=now - timedelta(seconds=1))
    store.add_plain_key("future-key", key_id="future", expires_at=now + timedelta(days=1))
    store.add_plain_key("suspended-key", key_id="paused", status="suspended")
    store.add_plain_key("revoked-key", key_id="gone", status="revoked")
    auth, _ = make_auth(store)

    assert (await auth.authenticate(KEY)).key_id == "good"
    assert (await auth.authenticate("future-key")).key_id == "future"
    cases = {
        None: ("INVALID_API_KEY", 401),
        "": ("INVALID_API_KEY", 401),
        "no-such-key": ("INVALID_API_KEY", 401),
        "x" * 10_000: ("INVALID_API_KEY", 401),
        "expired-key": ("EXPIRED_API_KEY", 401),
        "revoked-key": ("INVALID_API_KEY", 401),
        "suspended-key": ("KEY_SUSPENDED", 403),
    }
    for key, (code, status) in cases.items():
        err = await expect_error(auth, key)
        assert (err.code, err.status) == (code, status), key
        assert err.message and (not key or key not in err.message)


async def test_expiry_is_exact_even_for_a_cached_record() -> None:
    moment = [datetime(2030, 1, 1, tzinfo=UTC)]
    store = StaticKeyStore()
    store.add_plain_key(KEY, key_id="k", expires_at=moment[0] + timedelta(seconds=5))
    auth = Authenticator(store, ttl_s=3600, now=lambda: moment[0])
    await auth.authenticate(KEY)
    moment[0] += timedelta(seconds=6)
    assert (await expect_error(auth, KEY)).code == "EXPIRED_API_KEY"


async def test_revocation_takes_effect_within_the_ttl_and_not_before() -> None:
    store = FlakyStore()
    store.add_plain_key(KEY, key_id="k")
    auth, clock = make_auth(store, ttl_s=30.0)
    await auth.authenticate(KEY)
    store.set_status("k", "revoked")

    clock.t += 29.0  # cached positive answer still trusted
    assert (await auth.authenticate(KEY)).key_id == "k"
    assert store.calls == 1

    clock.t += 1.5  # past the TTL: the store is asked again and the revocation shows
    assert (await expect_error(auth, KEY)).code == "INVALID_API_KEY"
    assert store.calls == 2


async def test_unknown_keys_are_cached_negatively_for_a_short_time() -> None:
    store = FlakyStore()
    auth, clock = make_auth(store, ttl_s=30.0)  # negative TTL defaults to min(ttl, 5 s)
    for _ in range(20):
        await expect_error(auth, KEY)
    assert store.calls == 1

    store.add_plain_key(KEY, key_id="new")
    clock.t += 4.0
    await expect_error(auth, KEY)
    clock.t += 1.5
    assert (await auth.authenticate(KEY)).key_id == "new"
    assert store.calls == 2


async def test_concurrent_requests_share_one_store_lookup() -> None:
    store = FlakyStore()
    store.add_plain_key(KEY, key_id="k")
    auth, _ = make_auth(store)
    records = await asyncio.gather(*(auth.authenticate(KEY) for _ in range(50)))
    assert {r.key_id for r in records} == {"k"}
    assert store.calls == 1


async def test_store_outage_serves_cached_answer_then_503() -> None:
    store = FlakyStore()
    store.add_plain_key(KEY, key_id="k")
    auth, clock = make_auth(store, ttl_s=30.0, stale_if_error_s=60.0)
    await auth.authenticate(KEY)
    store.down = True
    clock.t += 45.0  # expired, but within the stale window
    assert (await auth.authenticate(KEY)).key_id == "k"
    clock.t += 60.0  # beyond the stale window
    err = await expect_error(auth, KEY)
    assert (err.code, err.status) == ("SERVICE_UNAVAILABLE", 503)
    # A key never seen before cannot be vouched for during an outage.
    assert (await expect_error(auth, "other-key")).status == 503


async def test_cache_is_bounded_and_random_keys_never_evict_valid_ones() -> None:
    store = StaticKeyStore()
    store.add_plain_key("valid-key", key_id="v")
    auth, _ = make_auth(store, max_entries=100)
    await auth.authenticate("valid-key")
    lookups = auth.store_lookups
    for i in range(500):
        await expect_error(auth, f"random-{i}")
    assert len(auth._negative) == 100 and len(auth._cache) == 1
    await auth.authenticate("valid-key")
    assert auth.store_lookups == lookups + 500  # the valid key is still cached: no lookup for it


async def test_a_revoked_key_stops_within_ttl_plus_stale_window_during_an_outage() -> None:
    store = FlakyStore()
    store.add_plain_key(KEY, key_id="k")
    clock = FakeClock()
    auth = Authenticator(store, ttl_s=30.0, stale_if_error_s=30.0, clock=clock)
    await auth.authenticate(KEY)
    store.down = True  # the operator revokes the key while the store is unreachable from here
    clock.t += 59.0
    assert (await auth.authenticate(KEY)).key_id == "k"
    clock.t += 2.0  # 61 s: past TTL + stale-if-error
    assert (await expect_error(auth, KEY)).status == 503


def test_failed_auth_throttle_per_address() -> None:
    from services.access import FailedAuthThrottle

    clock = FakeClock()
    throttle = FailedAuthThrottle(limit=3, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("1.2.3.4") is None
        throttle.failed("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == 61 and throttle.retry_after("5.6.7.8") is None
    clock.t += 61
    assert throttle.retry_after("1.2.3.4") is None


async def test_a_real_key_passes_an_address_throttled_by_guesses() -> None:
    """Behind one NAT, a flood of wrong keys throttles the address; a real key never used in this process still
    gets in (the store lists it), while the next guess is refused without a lookup."""
    from services.access import FailedAuthThrottle

    store = StaticKeyStore()
    store.add_plain_key("tts_real", key_id="real")
    store.add_plain_key("tts_gone", key_id="gone", status="revoked")
    auth, clock = make_auth(store)
    throttle = FailedAuthThrottle(limit=3, clock=clock)
    for n in range(3):
        throttle.failed("10.0.0.1", f"tts_guess{n}")
    assert auth.is_known("tts_real") is False  # the first look starts the list's refresh
    await asyncio.sleep(0)
    assert auth.is_known("tts_real") and not auth.is_known("tts_gone") and not auth.is_known("tts_guess9")
    assert throttle.retry_after("10.0.0.1", "tts_real", known=auth.is_known) is None
    assert throttle.retry_after("10.0.0.1", "tts_guess9", known=auth.is_known) is not None
    assert throttle.retry_after("10.0.0.1", None, known=auth.is_known) is not None
    lookups = auth.store_lookups
    for n in range(100):  # guesses never reach the store while the address is throttled
        assert throttle.retry_after("10.0.0.1", f"tts_more{n}", known=auth.is_known) is not None
    assert auth.store_lookups == lookups


def test_key_file_holds_hashes_only(tmp_path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {"key_id": "a", "key_hash": KEY_HASH, "owner": "acme", "credit_balance": 500},
                    {
                        "key_id": "b",
                        "key_hash": "f" * 64,
                        "status": "suspended",
                        "expires_at": "2031-01-01T00:00:00Z",
                    },
                ]
            }
        )
    )
    store = StaticKeyStore.from_file(path)
    rec = asyncio.run(store.get_by_hash(KEY_HASH))
    assert rec is not None and (rec.owner, rec.credit_balance) == ("acme", 500)
    other = asyncio.run(store.get_by_hash("f" * 64))
    assert other is not None and other.expires_at == datetime(2031, 1, 1, tzinfo=UTC)

    path.write_text(json.dumps([{"key_id": "c", "key_hash": "not-a-sha256"}]))
    with pytest.raises(KeyConfigError, match="key record 1: .*64 lowercase hex"):
        StaticKeyStore.from_file(path)


async def test_settings_plain_keys_and_file_are_combined(tmp_path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"key_id": "filekey", "key_hash": KEY_HASH}]))
    settings = Settings(api_keys=" alpha , beta,", api_keys_file=path, key_cache_ttl_s=7)
    auth = build_authenticator(settings)
    assert auth.ttl_s == 7
    for key in ("alpha", "beta"):
        assert (await auth.authenticate(key)).key_id == derive_key_id(key)
    assert (await auth.authenticate(KEY)).key_id == "filekey"


async def test_logs_never_contain_key_or_hash(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = FlakyStore()
    store.add_plain_key(KEY, key_id="visible-id", status="suspended")
    auth, clock = make_auth(store)
    for key in (KEY, "unknown-secret-key", None):
        with pytest.raises(AuthError):
            await auth.authenticate(key)
    store.down = True
    clock.t += 10_000
    with pytest.raises(AuthError):
        await auth.authenticate(KEY)
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert "visible-id" in text  # logs name the key by its id...
    for secret in (KEY, KEY_HASH, "unknown-secret-key", hash_key("unknown-secret-key")):
        assert secret not in text  # ...never by the key or its hash


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot be read"),  # a directory where the file should be
        ("{not json", "is not JSON"),
        ('{"keys": {"a": 1}}', "expected a list"),
        ('["a"]', "key record 1: expected an object"),
        ('[{"key_id": "a"}]', "key record 1: missing 'key_hash'"),
        (json.dumps([{"key_id": "a", "key_hash": KEY_HASH, "status": "on"}]), "key record 1: .*status"),
        (json.dumps([{"key_id": "a", "key_hash": KEY_HASH, "credit_balance": "lots"}]), "key record 1"),
        (
            json.dumps([{"key_id": "a", "key_hash": KEY_HASH}, {"key_id": "a", "key_hash": "f" * 64}]),
            "key record 2: duplicate key_id a",
        ),
    ],
)
def test_a_key_file_the_checks_cannot_use_is_refused_with_its_reason(tmp_path, content, reason) -> None:
    """Such a file once loaded as it could (or crashed with a bare traceback): every request then got 401. The
    service now refuses to start (create_app raises), saying which file and which record."""
    path = tmp_path / "keys.json"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(KeyConfigError, match=f"TTS_API_KEYS_FILE={path}.*{reason}"):
        build_authenticator(Settings(api_keys_file=path))


@pytest.mark.parametrize(
    ("backend", "needs"),
    [("postgres", "TTS_DATABASE_URL"), ("supabase", "TTS_SUPABASE_URL and TTS_SUPABASE_KEY")],
)
def test_a_backend_without_its_database_is_refused(backend, needs) -> None:
    with pytest.raises(KeyConfigError, match=needs):
        build_authenticator(Settings(key_backend=backend))
