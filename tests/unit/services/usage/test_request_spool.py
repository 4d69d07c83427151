"""The durable request-log spool: nothing dropped when the database is down, nothing lost at shutdown, a
restarted process writes what an earlier one left, and a record leaves the spool only once written."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from services.usage.request_log import Backoff, RequestLogger
from services.usage.request_spool import RequestSpool
from tests.conftest import PROJECT_ROOT
from tests.unit.services.usage.test_request_log import MemorySink, record


def _logger(sink: MemorySink, spool: RequestSpool) -> RequestLogger:
    return RequestLogger(
        sink,
        queue_size=5,
        batch_size=4,
        flush_s=0.01,
        spool=spool,
        backoff=Backoff(initial_s=0.01, max_s=0.02),
    )


def test_a_full_outage_drops_nothing_and_shutdown_keeps_everything(tmp_path: Path) -> None:
    async def run() -> None:
        down = MemorySink()
        down.down = True
        logger = _logger(down, RequestSpool(tmp_path, "first"))
        await logger.start()
        for i in range(20):  # four times the in-memory queue size
            assert logger.submit(record(i, client_request_id="same-client-id"))
        await asyncio.sleep(0.1)
        assert logger.pending == 20 and down.rows == {}
        assert await logger.close(timeout=0.2) == 0  # nothing lost: still on disk

        up = MemorySink()
        restarted = _logger(up, RequestSpool(tmp_path, "second"))  # a new process adopts the old spool
        assert restarted.spool.adopted == 20
        await restarted.start()
        for _ in range(200):
            if len(up.rows) == 20 and restarted.pending == 0:
                break
            await asyncio.sleep(0.02)
        assert sorted(up.rows) == sorted(f"req-{i}" for i in range(20))
        assert {r.client_request_id for r in up.rows.values()} == {"same-client-id"}
        assert restarted.pending == 0
        await restarted.close()

    asyncio.run(run())
    assert [p.name for p in tmp_path.glob("spool-first*")] == []  # adopted files are removed


def test_the_same_server_id_is_kept_once(tmp_path: Path) -> None:
    spool = RequestSpool(tmp_path, "one")
    spool.append("a", {"x": 1})
    spool.append("a", {"x": 2})
    assert spool.depth() == 1 and spool.oldest(10) == [("a", {"x": 1})]
    spool.remove(["a"])
    assert spool.depth() == 0 and spool.oldest_age_s() == 0.0
    spool.close()


def test_a_live_process_spool_is_never_adopted(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from services.usage.request_spool import RequestSpool;"
            f"s = RequestSpool(__import__('pathlib').Path({str(tmp_path)!r}), 'live'); s.append('x', {{}});"
            "print('ready', flush=True); time.sleep(30)",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        mine = RequestSpool(tmp_path, "mine")
        assert mine.adopted == 0 and (tmp_path / "spool-live.sqlite3").exists()
        mine.close()
    finally:
        holder.kill()
        holder.wait()
    assert RequestSpool(tmp_path, "after").adopted == 1  # SIGKILLed: its record is taken over


def test_an_unwritable_spool_directory_does_not_stop_the_server(tmp_path: Path) -> None:
    """An unwritable spool directory stopped the server from starting. It now falls back to
    the in-memory queue (direct writes), counted as a spool error and logged."""
    from services.usage.request_log import build_request_logger
    from shared import metrics
    from shared.settings import Settings

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the spool directory should be")
    before = metrics.REQUEST_LOG_ERRORS.labels("spool")._value.get()
    settings = Settings(request_log_spool_dir=blocker / "spool")
    request_logger = build_request_logger(settings, sink=MemorySink())
    assert request_logger.spool is None
    assert metrics.REQUEST_LOG_ERRORS.labels("spool")._value.get() == before + 1
    assert request_logger.submit(record(1))


def test_a_failing_spool_append_writes_the_record_directly(tmp_path: Path) -> None:
    """10 of 10 records were lost with the dropped counter still 0 when the spool could not be written: now each is
    counted as a spool error and written to the database from memory, as without a spool."""
    from shared import metrics

    async def run() -> None:
        sink = MemorySink()
        spool = RequestSpool(tmp_path / "spool")
        request_logger = RequestLogger(sink, batch_size=4, flush_s=0.01, spool=spool)
        await request_logger.start()

        def full_disk(*args, **kwargs):
            raise OSError(28, "No space left on device")

        spool.append = full_disk  # every append now fails, as on a full disk
        before = metrics.REQUEST_LOG_ERRORS.labels("spool")._value.get()
        assert [request_logger.submit(record(i)) for i in range(10)] == [True] * 10
        assert metrics.REQUEST_LOG_ERRORS.labels("spool")._value.get() == before + 10
        for _ in range(100):
            if len(sink.rows) == 10:
                break
            await asyncio.sleep(0.02)
        assert sorted(sink.rows) == sorted(record(i).request_id for i in range(10))
        assert request_logger.dropped == 0 and not request_logger._overflow

    asyncio.run(run())


def test_an_intent_is_replaced_by_its_final_record_and_never_written(tmp_path: Path) -> None:
    """An admitted request's intent sits in the spool until its final record replaces it; the writer
    sends only final records, and a late intent never overwrites a final one."""
    from dataclasses import replace

    async def run() -> None:
        sink = MemorySink()
        logger = _logger(sink, RequestSpool(tmp_path, "one"))
        await logger.start()
        await logger.intend_async(replace(record(1), status="in_progress"))
        await logger.intend_async(replace(record(2), status="in_progress"))
        await asyncio.sleep(0.05)
        assert sink.rows == {} and logger.pending == 0 and logger.spool.in_progress() == 2
        assert logger.submit(record(1))
        for _ in range(100):
            if sink.rows:
                break
            await asyncio.sleep(0.01)
        assert list(sink.rows) == ["req-1"] and sink.rows["req-1"].status == "completed"
        assert logger.spool.in_progress() == 1  # req-2 is still running
        logger.spool.append("req-3", replace(record(3)).to_json_row())
        logger.spool.intend("req-3", {"late": True})  # a late intent is ignored
        assert logger.spool.in_progress() == 1
        await logger.close()

    asyncio.run(run())


def test_a_killed_process_intents_are_recovered_once_as_interrupted(tmp_path: Path) -> None:
    """Kill -9 with requests in flight left no row for them. The next process adopts the dead
    process's spool: each in-flight request becomes one `interrupted` record (nothing charged), each answered one
    keeps its final record, and nothing is written twice."""
    script = (
        "import pathlib, time\n"
        "from dataclasses import replace\n"
        "from services.usage.request_spool import RequestSpool\n"
        "from tests.unit.services.usage.test_request_log import record\n"
        f"s = RequestSpool(pathlib.Path({str(tmp_path)!r}), 'victim')\n"
        "for i in range(4):\n"
        "    s.intend(f'req-{i}', replace(record(i), status='in_progress', key_id='k').to_json_row())\n"
        "for i in range(2):\n"
        "    s.append(f'req-{i}', replace(record(i), key_id='k', credits_charged=10).to_json_row())\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    _kill_after_ready(script)
    sink = _replayed(tmp_path, rows=4)
    assert sink.adopted == 4 and sink.in_progress == 0
    assert {i: r.status for i, r in sink.rows.items()} == {
        "req-0": "completed",
        "req-1": "completed",
        "req-2": "interrupted",
        "req-3": "interrupted",
    }
    assert [sink.rows[f"req-{i}"].credits_charged for i in range(4)] == [10, 10, 0, 0]
    assert (
        sink.rows["req-2"].error_code == "SERVER_INTERRUPTED" and sink.rows["req-2"].completed_at is not None
    )
    assert RequestSpool(tmp_path, "again").adopted == 0  # nothing left to replay


def _kill_after_ready(script: str) -> None:
    """Run `script` in a process of its own until it prints "ready", then SIGKILL it: no shutdown code runs."""
    victim = subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == "ready"
    finally:
        victim.kill()
        victim.wait()


class _Replayed(MemorySink):
    adopted = 0  # intents the restarted spool took over
    in_progress = 0  # of them, still counted as running once adopted


def _replayed(tmp_path: Path, *, rows: int) -> _Replayed:
    """What a restarted process's request log stores from the spool a killed one left (`rows` of them)."""

    async def run() -> _Replayed:
        sink = _Replayed()
        logger = _logger(sink, RequestSpool(tmp_path, "restarted"))
        sink.adopted, sink.in_progress = logger.spool.adopted, logger.spool.in_progress()
        await logger.start()
        for _ in range(200):
            if len(sink.rows) == rows:
                break
            await asyncio.sleep(0.01)
        await logger.close()
        return sink

    return asyncio.run(run())


def test_a_killed_process_interrupted_rows_say_what_was_delivered(tmp_path: Path) -> None:
    """An interrupted row carries the last progress note of its request (audio seconds delivered and the text that
    audio covers), not the intent's empty text and no audio; a request with no note keeps its intent's fields."""
    script = (
        "import asyncio, pathlib, time\n"
        "from dataclasses import replace\n"
        "from services.usage.request_log import RequestLogger\n"
        "from services.usage.request_spool import RequestSpool\n"
        "from tests.unit.services.usage.test_request_log import MemorySink, record\n"
        f"s = RequestSpool(pathlib.Path({str(tmp_path)!r}), 'victim')\n"
        "log = RequestLogger(MemorySink(), spool=s, store_text=True)\n"
        "for i in range(2):\n"
        "    s.intend(f'req-{i}', replace(record(i), status='in_progress', key_id='k', text_length=0).to_json_row())\n"
        "async def deliver():\n"
        "    for seconds, text in ((1.0, 'Hello'), (2.2, 'Hello there'), (3.4, 'Hello there, friend')):\n"
        "        log.note_progress('req-0', audio_seconds=seconds, text=text)\n"
        "    while log._progress_writers:\n"
        "        await asyncio.sleep(0.01)\n"
        "asyncio.run(deliver())\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    _kill_after_ready(script)
    sink = _replayed(tmp_path, rows=2)
    assert sink.adopted == 2
    rows = sink.rows
    delivered, quiet = rows["req-0"], rows["req-1"]
    assert (delivered.status, delivered.credits_charged) == ("interrupted", 0)
    assert (delivered.audio_duration_seconds, delivered.text_length, delivered.text) == (
        3.4,
        19,
        "Hello there, friend",
    )
    assert quiet.status == "interrupted" and quiet.text_length == 0 and not quiet.audio_duration_seconds


def test_progress_notes_leave_out_the_text_unless_it_is_stored(tmp_path: Path) -> None:
    spool = RequestSpool(tmp_path, "one")
    spool.intend("req", {"request_id": "req", "status": "in_progress"})

    async def note() -> None:
        logger = RequestLogger(MemorySink(), spool=spool)  # store_text off (the default)
        logger.note_progress("req", audio_seconds=1.5, text="secret words")
        while logger._progress_writers:  # noqa: SLF001 - waiting for the one write
            await asyncio.sleep(0.01)

    asyncio.run(note())
    [(_, _, payload, intent, progress)] = spool._conn.execute("SELECT * FROM spool").fetchall()  # noqa: SLF001
    assert intent == 1 and "secret" not in progress and '"text_length": 12' in progress
    spool.append("req", {"request_id": "req", "status": "completed"})
    spool.progress("req", {"audio_duration_seconds": 9.0})  # after the final record: nothing to note on
    assert spool.oldest(5) == [("req", {"request_id": "req", "status": "completed"})]
