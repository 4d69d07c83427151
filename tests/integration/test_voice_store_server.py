"""The Supabase voice store at its HTTP boundary: supabase-py talks to a local stand-in for PostgREST on loopback
(table `tts_voices` in memory), as it would to https://<project>.supabase.co. The contract it keeps is
`check_store` in tests/unit/services/voice_library/test_voice_store.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from services.voice_library import new_voice_id
from services.voice_library.store import VoiceStoreUnavailable
from services.voice_library.supabase_store import SupabaseVoiceStore
from tests.http_stub import json_server
from tests.unit.services.voice_library.test_voice_store import check_store, record

pytestmark = pytest.mark.integration

SERVICE_KEY = "sb_secret_test-service-key-0123456789"


class FakePostgrest:
    """`tts_voices` in memory behind the PostgREST calls the store makes (eq filters, order, limit, insert,
    delete returning rows). Records every request for header checks."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.fail = False
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: object) -> tuple[int, object]:
        if self.fail:
            return 503, {"message": "unavailable", "code": "PGRST000"}
        assert path == "/rest/v1/tts_voices", path
        filters = {k: v[0].removeprefix("eq.") for k, v in query.items() if v[0].startswith("eq.")}
        with self.lock:
            matching = [r for r in self.rows if all(str(r[k]) == v for k, v in filters.items())]
            if method == "POST":
                self.rows.append(dict(body))  # type: ignore[arg-type]
                return 201, None
            if method == "DELETE":
                self.rows = [r for r in self.rows if r not in matching]
                return 200, matching
            for key in reversed(query.get("order", [""])[0].split(",")):
                if key:
                    matching.sort(key=lambda r, k=key.split(".")[0]: r[k])
            return 200, matching[: int(query["limit"][0])] if "limit" in query else matching


@pytest.fixture
def postgrest() -> Iterator[tuple[FakePostgrest, str]]:
    fake = FakePostgrest()

    def handle(
        method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: object
    ) -> tuple[int, object]:
        fake.requests.append((method, path, headers))
        return fake.handle(method, path, query, body)

    with json_server(handle) as url:
        yield fake, url


async def test_supabase_store_keeps_the_contract_with_the_service_key(postgrest) -> None:
    fake, url = postgrest
    await check_store(SupabaseVoiceStore(url, SERVICE_KEY), SupabaseVoiceStore(url, SERVICE_KEY))
    assert {method for method, _, _ in fake.requests} == {"GET", "POST", "DELETE"}
    assert all(headers["apikey"] == SERVICE_KEY for _, _, headers in fake.requests)


async def test_supabase_outage_is_a_503_that_quotes_no_row_data(postgrest) -> None:
    fake, url = postgrest
    fake.fail = True
    store = SupabaseVoiceStore(url, SERVICE_KEY)
    with pytest.raises(VoiceStoreUnavailable) as info:
        await store.insert(record(transcript="a private sentence"))
    assert info.value.code == "SERVICE_UNAVAILABLE" and "private" not in info.value.message
    with pytest.raises(VoiceStoreUnavailable):
        await store.get(new_voice_id())
