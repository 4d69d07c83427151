"""The Supabase store of recent requests at its HTTP boundary: supabase-py talks to a local stand-in for PostgREST
(table `tts_recent_requests` in memory, the filters the store uses), as it would to https://<project>.supabase.co."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from services.continuity import RecentRequest, SupabaseRecentStore
from services.continuity.stores import RecentStoreUnavailable
from services.database import make_supabase_client
from tests.http_stub import json_server

pytestmark = pytest.mark.integration

SERVICE_KEY = "sb_secret_test-service-key-0123456789"
GLOBALS = tuple(range(100, 132))


class FakeTable:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self.fail = False
        self.lock = threading.Lock()

    def matches(self, row: dict, query: dict[str, list[str]]) -> bool:
        for column, (condition,) in query.items():
            if column in ("limit", "select", "on_conflict"):
                continue
            op, _, value = condition.partition(".")
            if column.endswith("_at"):
                left, right = datetime.fromisoformat(row[column]), datetime.fromisoformat(value)
            else:
                left, right = row[column], value
            if not {"eq": left == right, "gt": left > right, "lte": left <= right}[op]:
                return False
        return True

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: object
    ) -> tuple[int, object]:
        self.requests.append((method, query, headers))
        if self.fail:
            return 503, {"message": "unavailable", "code": "PGRST000"}
        assert path == "/rest/v1/tts_recent_requests", path
        with self.lock:
            if method == "POST":
                assert query.get("on_conflict") == ["request_id"]
                assert "resolution=ignore-duplicates" in headers.get("prefer", "")
                self.rows.setdefault(body["request_id"], dict(body))  # type: ignore[index]
                return 201, None
            matching = [r for r in self.rows.values() if self.matches(r, query)]
            if method == "DELETE":
                for row in matching:
                    del self.rows[row["request_id"]]
                return 204, None
            return 200, matching[: int(query["limit"][0])] if "limit" in query else matching


@pytest.fixture
def postgrest() -> Iterator[tuple[FakeTable, str]]:
    fake = FakeTable()
    with json_server(fake.handle) as url:
        yield fake, url


def record(request_id: str, expires_in_s: float = 600) -> RecentRequest:
    now = datetime.now(UTC).replace(microsecond=0)
    return RecentRequest(
        request_id=request_id,
        owner_key_id="key_a",
        voice_id="fixed",
        global_tokens=GLOBALS,
        tail_text="and the end.",
        tail_semantic=(1, 2, 3),
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in_s),
    )


async def test_put_get_expire_and_purge_with_the_service_key(postgrest) -> None:
    fake, url = postgrest
    store = SupabaseRecentStore(make_supabase_client(url, SERVICE_KEY))
    kept, expired = record("r-kept"), record("r-expired", expires_in_s=-5)
    await store.put(expired)  # the first write purges: the expired row is already there
    await store.put(kept)
    await store.put(kept)  # a repeat is ignored
    assert await store.get("r-kept") == kept
    assert await store.get("r-expired") is None and await store.get("r-none") is None
    store._purged_at = float("-inf")
    await store.put(record("r-third"))
    assert set(fake.rows) == {"r-kept", "r-third"}  # the expired row was deleted
    assert all(headers["apikey"] == SERVICE_KEY for _, _, headers in fake.requests)


async def test_an_outage_is_a_503_that_quotes_no_row_data(postgrest) -> None:
    fake, url = postgrest
    fake.fail = True
    store = SupabaseRecentStore(make_supabase_client(url, SERVICE_KEY))
    with pytest.raises(RecentStoreUnavailable) as info:
        await store.get("r-kept")
    assert info.value.code == "SERVICE_UNAVAILABLE" and "end" not in info.value.message
