"""Request log queue: never blocks, drops only the oldest when full, batches, retries with backoff, flushes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

import pytest

from services.usage.request_log import (
    Backoff,
    NullSink,
    RequestLogger,
    RequestRecord,
    SinkError,
    build_request_logger,
)
from shared.metrics import REGISTRY
from shared.settings import Settings


def record(i: int, **kw) -> RequestRecord:
    return RequestRecord(request_id=f"req-{i}", speaker="alice", text_length=10, status="completed", **kw)


class MemorySink:
    """Records writes; `fail_next` transient failures, then `poison` request ids rejected for good."""

    name = "memory"

    def __init__(self, fail_next: int = 0, poison: Sequence[str] = ()) -> None:
        self.rows: dict[str, RequestRecord] = {}
        self.batches: list[int] = []
        self.fail_next = fail_next
        self.poison = set(poison)
        self.attempts = 0
        self.down = False

    async def write(self, records: Sequence[RequestRecord]) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        if self.down or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            raise SinkError("memory ConnectionRefusedError")
        if any(r.request_id in self.poison for r in records):
            raise SinkError("memory DataError (22P02)", transient=False)
        self.batches.append(len(records))
        for r in records:
            self.rows.setdefault(r.request_id, r)  # idempotent like ON CONFLICT DO NOTHING

    async def close(self) -> None:
        pass


def dropped_total() -> float:
    return REGISTRY.get_sample_value("veena3_tts_request_log_dropped_total") or 0.0


def test_submit_never_blocks_and_never_raises_without_a_running_writer() -> None:
    logger = RequestLogger(MemorySink(), queue_size=100, batch_size=10)
    started = time.perf_counter()
    for i in range(10_000):
        logger.submit(record(i))
    assert time.perf_counter() - started < 1.0
    assert logger.pending == 100
    assert logger.submit("not a record") is False  # type: ignore[arg-type]  # bad input is swallowed


async def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    sink = MemorySink()
    logger = RequestLogger(sink, queue_size=5, batch_size=100, flush_s=0.01)
    before = dropped_total()
    kept = [logger.submit(record(i)) for i in range(8)]
    assert kept == [True] * 5 + [False] * 3
    assert logger.dropped == 3 and dropped_total() == before + 3
    lost = await logger.close(timeout=5)
    assert lost == 0
    assert sorted(sink.rows) == [f"req-{i}" for i in range(3, 8)]  # the newest five survive


async def test_batches_by_size_and_by_time() -> None:
    sink = MemorySink()
    logger = RequestLogger(sink, queue_size=1000, batch_size=10, flush_s=0.05)
    await logger.start()
    for i in range(25):
        logger.submit(record(i))
    await asyncio.sleep(0.2)  # two full batches at once, the partial one after flush_s
    assert sink.batches == [10, 10, 5]
    assert logger.pending == 0
    await logger.close()


async def test_close_flushes_a_partial_batch_without_waiting_for_flush_s() -> None:
    sink = MemorySink()
    logger = RequestLogger(sink, batch_size=100, flush_s=60)
    await logger.start()
    for i in range(7):
        logger.submit(record(i))
    started = time.perf_counter()
    assert await logger.close(timeout=5) == 0
    assert time.perf_counter() - started < 1.0
    assert len(sink.rows) == 7


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    jittered = [Backoff(initial_s=1.0, max_s=10.0, jitter=0.2).next_delay() for _ in range(50)]
    assert all(0.8 <= d <= 1.2 for d in jittered) and len(set(jittered)) > 1


async def test_sink_outage_keeps_every_record_and_backs_off() -> None:
    sink = MemorySink(fail_next=5)
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    logger = RequestLogger(
        sink,
        queue_size=1000,
        batch_size=20,
        flush_s=0.01,
        backoff=Backoff(0.5, 4.0, jitter=0.0),
        sleep=fake_sleep,
    )
    before = dropped_total()
    await logger.start()
    for i in range(50):
        logger.submit(record(i))
    assert await logger.close(timeout=5) == 0
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert sorted(sink.rows) == sorted(f"req-{i}" for i in range(50))
    assert logger.dropped == 0 and dropped_total() == before


async def test_records_submitted_during_an_outage_wait_in_the_queue() -> None:
    sink = MemorySink()
    sink.down = True
    logger = RequestLogger(sink, queue_size=1000, batch_size=10, flush_s=0.01, backoff=Backoff(0.01, 0.02))
    await logger.start()
    for i in range(100):
        logger.submit(record(i))
        if i % 10 == 0:
            await asyncio.sleep(0.005)
    assert logger.pending == 100 and not sink.rows
    sink.down = False
    assert await logger.close(timeout=5) == 0
    assert len(sink.rows) == 100 and logger.written == 100


async def test_a_rejected_record_is_dropped_alone() -> None:
    sink = MemorySink(poison=["req-2"])
    logger = RequestLogger(sink, batch_size=5, flush_s=0.01)
    await logger.start()
    for i in range(5):
        logger.submit(record(i))
    await logger.close(timeout=5)
    assert sorted(sink.rows) == ["req-0", "req-1", "req-3", "req-4"]
    assert logger.dropped == 1


async def test_close_gives_up_after_timeout_and_reports_the_loss() -> None:
    sink = MemorySink()
    sink.down = True
    logger = RequestLogger(sink, batch_size=10, flush_s=0.01, backoff=Backoff(0.01, 0.05))
    await logger.start()
    for i in range(12):
        logger.submit(record(i))
    before = dropped_total()
    started = time.perf_counter()
    assert await logger.close(timeout=0.3) == 12
    assert time.perf_counter() - started < 2.0
    assert dropped_total() == before + 12


async def test_text_is_stored_only_when_allowed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "my private sentence"
    for allowed in (False, True):
        sink = MemorySink(fail_next=1)
        logger = RequestLogger(sink, batch_size=1, flush_s=0.01, store_text=allowed, backoff=Backoff(0.01))
        await logger.start()
        logger.submit(record(1, text=secret))
        await logger.close(timeout=5)
        assert sink.rows["req-1"].text == (secret if allowed else None)
    assert secret not in caplog.text


async def test_submit_from_another_thread_wakes_the_writer() -> None:
    sink = MemorySink()
    logger = RequestLogger(sink, batch_size=1, flush_s=60)
    await logger.start()
    thread = threading.Thread(target=lambda: logger.submit(record(1)))
    thread.start()
    thread.join()
    for _ in range(100):
        if sink.rows:
            break
        await asyncio.sleep(0.01)
    assert "req-1" in sink.rows
    await logger.close()


def test_rows_hold_no_nan_and_json_rows_hold_iso_times() -> None:
    rec = record(1, rtf=float("nan"), ttfb_ms=float("inf"), audio_duration_seconds=1.5)
    row = rec.to_row()
    assert row["rtf"] is None and row["ttfb_ms"] is None and row["audio_duration_seconds"] == 1.5
    json_row = rec.to_json_row()
    assert json_row["created_at"].endswith("+00:00") and json_row["completed_at"] is None


async def test_settings_build_a_null_sink_logger() -> None:
    logger = build_request_logger(Settings(request_log_queue_size=7, log_request_text=True))
    assert isinstance(logger.sink, NullSink) and logger.queue_size == 7 and logger.store_text
    await logger.start()
    logger.submit(record(1))
    assert await logger.close() == 0
