"""Supabase request-log sink and key store, checked at their HTTP boundary.

A local HTTP server stands in for the Supabase project: supabase-py talks to it exactly as it would to
https://<project>.supabase.co, and the test checks the requests it made (paths, headers, JSON bodies).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from services.access import Authenticator, SupabaseKeyStore, hash_key, make_supabase_client
from services.usage.credits import CreditLedger, InsufficientCredits
from services.usage.request_log import Backoff, RequestLogger, RequestRecord, SupabaseSink

pytestmark = pytest.mark.integration

SERVICE_KEY = "sb_secret_test-service-key-0123456789"
API_KEY = "tts_customer-key-abcdef"
SECRET_TEXT = "the customer's private sentence"


@dataclass
class Captured:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: object


@dataclass
class FakeSupabase:
    """Records every request; answers from `responses` (status, JSON) in order, then `default`."""

    requests: list[Captured] = field(default_factory=list)
    responses: list[tuple[int, object]] = field(default_factory=list)
    rpc_results: dict[str, object] = field(default_factory=dict)
    url: str = ""

    def answer(self, captured: Captured) -> tuple[int, object]:
        if self.responses:
            return self.responses.pop(0)
        name = captured.path.rsplit("/", 1)[-1]
        if captured.path.startswith("/rest/v1/rpc/"):
            return 200, self.rpc_results.get(name, [])
        return 201, None


@pytest.fixture
def supabase() -> Iterator[FakeSupabase]:
    fake = FakeSupabase()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parsed = urlparse(self.path)
            captured = Captured(
                self.command,
                parsed.path,
                parse_qs(parsed.query),
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            fake.requests.append(captured)
            status, payload = fake.answer(captured)
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def record(i: int) -> RequestRecord:
    return RequestRecord(
        request_id=f"req-{i}",
        speaker="reet",
        text_length=len(SECRET_TEXT),
        status="completed",
        key_id="key-1",
        stream=True,
        format="mp3",
        text=SECRET_TEXT,
        ttfb_ms=420.0,
        rtf=float("nan"),
        credits_charged=len(SECRET_TEXT),
    )


def assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    for secret in (SERVICE_KEY, API_KEY, hash_key(API_KEY), SECRET_TEXT):
        assert secret not in text


async def test_sink_stores_rows_through_the_store_function(supabase: FakeSupabase, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    logger = RequestLogger(SupabaseSink(supabase.url, SERVICE_KEY), batch_size=10, flush_s=0.05)
    await logger.start()
    for i in range(3):
        logger.submit(record(i))
    assert await logger.close(timeout=10) == 0

    assert len(supabase.requests) == 1
    req = supabase.requests[0]
    assert (req.method, req.path) == ("POST", "/rest/v1/rpc/tts_store_requests")
    assert req.headers["apikey"] == SERVICE_KEY
    assert req.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert req.headers["content-type"].startswith("application/json")
    assert isinstance(req.body, dict) and list(req.body) == ["p_rows"]
    rows = req.body["p_rows"]
    assert [row["request_id"] for row in rows] == ["req-0", "req-1", "req-2"]
    row = rows[0]
    assert row["text"] is None and row["text_length"] == len(SECRET_TEXT)  # text not stored by default
    assert row["rtf"] is None and row["ttfb_ms"] == 420.0 and row["format"] == "mp3" and row["stream"] is True
    assert row["created_at"].endswith("+00:00") and row["refund_credits"] == 0
    assert_clean_logs(caplog)


async def test_without_the_store_function_rows_are_upserted_and_the_migration_named(
    supabase: FakeSupabase, caplog
) -> None:
    """A project whose migrations stop before 009: every row is still kept (a plain upsert), the error names the
    migration, and the missing function is not asked for again on every batch."""
    caplog.set_level(logging.DEBUG)
    supabase.responses = [
        (404, {"code": "PGRST202", "message": "Could not find the function", "details": None, "hint": None})
    ]
    logger = RequestLogger(SupabaseSink(supabase.url, SERVICE_KEY), batch_size=2, flush_s=0.05)
    await logger.start()
    for i in range(4):
        logger.submit(record(i))
    assert await logger.close(timeout=10) == 0
    paths = [r.path for r in supabase.requests]
    assert paths == ["/rest/v1/rpc/tts_store_requests", "/rest/v1/tts_requests", "/rest/v1/tts_requests"]
    upsert = supabase.requests[1]
    assert upsert.query["on_conflict"] == ["request_id"]
    prefer = upsert.headers["prefer"].split(",")
    assert "resolution=ignore-duplicates" in prefer and "return=minimal" in prefer
    assert [row["request_id"] for r in supabase.requests[1:] for row in r.body] == [
        f"req-{i}" for i in range(4)
    ]
    assert logger.written == 4 and logger.dropped == 0
    assert "009_store_requests.sql" in caplog.text
    assert_clean_logs(caplog)


async def test_sink_retries_while_supabase_is_unavailable(supabase: FakeSupabase, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    supabase.responses = [
        (503, {"message": "upstream down"}),
        (500, {"code": "57P01", "message": "shutdown"}),
    ]
    logger = RequestLogger(
        SupabaseSink(supabase.url, SERVICE_KEY), batch_size=10, flush_s=0.05, backoff=Backoff(0.05, 0.2)
    )
    await logger.start()
    for i in range(4):
        logger.submit(record(i))
    assert await logger.close(timeout=10) == 0
    assert len(supabase.requests) == 3  # two failures, then the same batch again
    assert supabase.requests[0].body == supabase.requests[2].body
    assert logger.dropped == 0 and logger.written == 4
    assert_clean_logs(caplog)


async def test_sink_drops_only_a_row_supabase_rejects(supabase: FakeSupabase) -> None:
    supabase.responses = [(400, {"code": "22003", "message": "value out of range", "details": SECRET_TEXT})]
    supabase.responses += [(201, None), (400, {"code": "22003", "message": "value out of range"})]
    logger = RequestLogger(SupabaseSink(supabase.url, SERVICE_KEY), batch_size=2, flush_s=0.05)
    await logger.start()
    logger.submit(record(0))
    logger.submit(record(1))
    await logger.close(timeout=10)
    # Batch refused as invalid -> each row alone: row 0 accepted, row 1 rejected and dropped.
    assert [len(r.body["p_rows"]) for r in supabase.requests] == [2, 1, 1]
    assert logger.written == 1 and logger.dropped == 1


async def test_key_store_and_credits_through_rpc(supabase: FakeSupabase, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    row = {
        "key_id": "key-1",
        "key_hash": hash_key(API_KEY),
        "owner": "acme",
        "status": "active",
        "expires_at": None,
        "rate_limit_per_minute": 30,
        "max_concurrent": 2,
        "credit_balance": 100,
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    supabase.rpc_results = {
        "tts_lookup_api_key": [row],
        "tts_reserve_credits": [{"o_status": "held", "o_balance": 70}],
    }
    store = SupabaseKeyStore(client=make_supabase_client(supabase.url, SERVICE_KEY))
    auth = Authenticator(store, ttl_s=30)

    key = await auth.authenticate(API_KEY)
    assert (key.key_id, key.rate_limit_per_minute, key.credit_balance) == ("key-1", 30, 100)
    lookup = supabase.requests[0]
    assert (lookup.method, lookup.path) == ("POST", "/rest/v1/rpc/tts_lookup_api_key")
    assert lookup.body == {"p_key_hash": hash_key(API_KEY)}
    assert hash_key(API_KEY) not in str(lookup.query) and API_KEY not in json.dumps(lookup.body)
    assert lookup.headers["apikey"] == SERVICE_KEY

    ledger = CreditLedger(store)
    held = await ledger.reserve(key, 30, "req-9")
    assert held.balance_after == 70
    debit = supabase.requests[-1]
    assert debit.path == "/rest/v1/rpc/tts_reserve_credits" and debit.body == {
        "p_reservation_id": held.reservation_ids[0],
        "p_request_id": "req-9",
        "p_key_id": "key-1",
        "p_amount": 30,
    }

    supabase.rpc_results["tts_reserve_credits"] = [{"o_status": "short", "o_balance": 70}]  # balance too low
    with pytest.raises(InsufficientCredits):
        await ledger.reserve(key, 500, "req-10")

    supabase.responses = [(503, {"message": "down"})]
    auth_uncached = Authenticator(store, ttl_s=0, stale_if_error_s=0)
    with pytest.raises(Exception) as info:
        await auth_uncached.authenticate(API_KEY)
    assert getattr(info.value, "status", None) == 503
    assert_clean_logs(caplog)
