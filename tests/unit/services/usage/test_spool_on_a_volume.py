"""The request-log spool on a Modal Volume: a Volume keeps a container's writes only once committed and has
no cross-container file locks. Tested at the adapter: `ContainerLifecycle` with a stand-in for the Volume's `commit`
(it copies the spool directory to what "the next container" mounts), and heartbeat-based adoption in RequestSpool."""

from __future__ import annotations

import asyncio
import fcntl
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from services.deployment.modal_deployment import ContainerLifecycle, ModalConfig
from services.usage.request_log import RequestLogger, RequestRecord, SinkError
from services.usage.request_spool import RequestSpool, record_payload

STALE = 60.0


class DownSink:
    """The database is away: every batch fails, so records stay in the spool (what the Volume must keep)."""

    name = "down"

    async def write(self, records) -> None:  # noqa: ANN001
        raise SinkError("database down")

    async def close(self) -> None:
        return None


class VolumeStandIn:
    """`commit()` snapshots the mounted directory into `committed`: what a later container would mount. The
    lifecycle commits from a worker thread; `mount()` takes a whole snapshot, never one half copied, as a Volume's
    commit is whole to the next container."""

    def __init__(self, mounted: Path, committed: Path) -> None:
        self.mounted, self.committed, self.commits = mounted, committed, 0
        self._lock = threading.Lock()

    def commit(self) -> None:
        with self._lock:
            shutil.rmtree(self.committed, ignore_errors=True)
            shutil.copytree(self.mounted, self.committed)
            self.commits += 1

    def mount(self, at: Path) -> Path:
        """What a container started now would mount, copied to `at`."""
        with self._lock:
            shutil.copytree(self.committed, at)
        return at


def record(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"vol-{i}", speaker="reet", text_length=5, status="completed")


def lifecycle_with(spool: RequestSpool, volume: VolumeStandIn) -> tuple[ContainerLifecycle, RequestLogger]:
    logger = RequestLogger(DownSink(), spool=spool, flush_s=0.05)
    host = ContainerLifecycle(ModalConfig(), volume_commit=volume.commit, commit_every_s=0.05)
    host.web_app = SimpleNamespace(
        state=SimpleNamespace(
            services=SimpleNamespace(access=SimpleNamespace(request_logger=logger)), metrics_pusher=None
        )
    )
    return host, logger


def test_a_committed_spool_holds_every_record_and_the_next_container_adopts_it_after_exit(
    tmp_path: Path,
) -> None:
    mounted, committed = tmp_path / "mounted", tmp_path / "committed"
    volume = VolumeStandIn(mounted, committed)
    spool = RequestSpool(mounted, instance="task-a", stale_after_s=STALE)
    host, logger = lifecycle_with(spool, volume)

    async def serve_then_exit() -> None:
        await logger.start()
        for i in range(3):
            await logger.submit_async(record(i))
        host.commit_spool()  # the loop's step: heartbeat, WAL folded in, commit
        assert volume.commits == 1
        shutil.copytree(committed, tmp_path / "peek")  # what a container killed now would leave on the Volume
        reader = RequestSpool(tmp_path / "peek", instance="reader")
        try:  # all three, with the WAL folded in
            assert reader.adopted == 3
        finally:
            reader.close()
        await logger.submit_async(record(3))
        await host.stop()  # Modal's exit: the request log closes the spool, then one last commit

    asyncio.run(serve_then_exit())
    assert volume.commits == 2
    assert (committed / "spool-task-a.sqlite3.alive").read_text() == "0"  # closed: adoptable at once
    following = RequestSpool(committed, instance="task-b", stale_after_s=STALE)
    try:
        assert following.adopted == 4 and sorted(i for i, _ in following.oldest(10)) == [
            f"vol-{i}" for i in range(4)
        ]
    finally:
        following.close()


def test_the_commit_loop_runs_while_the_container_serves(tmp_path: Path) -> None:
    volume = VolumeStandIn(tmp_path / "mounted", tmp_path / "committed")
    spool = RequestSpool(volume.mounted, instance="task-a", stale_after_s=STALE)
    host, logger = lifecycle_with(spool, volume)

    async def serve() -> None:
        host._commit_task = asyncio.get_running_loop().create_task(host._commit_loop())
        await logger.start()
        await logger.submit_async(record(0))
        deadline = time.monotonic() + 5.0  # three rounds of a 50 ms loop, however slow the machine
        while volume.commits < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert volume.commits >= 3
        copy = RequestSpool(volume.mount(tmp_path / "peek"), instance="peek")
        try:  # the committed copy already holds the record, though the WAL was never checkpointed by hand
            assert copy.adopted == 1 and [i for i, _ in copy.oldest(5)] == ["vol-0"]
        finally:
            copy.close()
        await host.stop()

    asyncio.run(serve())


def _alive_elsewhere(directory: Path, instance: str) -> RequestSpool:
    """A spool whose owner runs in another container: its flock is not visible here, its heartbeat is."""
    other = RequestSpool(directory, instance=instance, stale_after_s=STALE)
    other.append("theirs-1", record_payload(record(9)))
    fcntl.flock(other._lock_file, fcntl.LOCK_UN)  # another machine's lock does not reach this one
    return other


def test_a_spool_with_a_recent_heartbeat_is_left_to_its_container(tmp_path: Path) -> None:
    other = _alive_elsewhere(tmp_path, "task-a")
    mine = RequestSpool(tmp_path, instance="task-b", stale_after_s=STALE)
    try:
        assert mine.adopted == 0 and other.depth() == 1  # alive: not taken, whatever the lock says
    finally:
        mine.close()
    Path(f"{other.path}.alive").write_text(f"{time.time() - 2 * STALE:.3f}")  # it stopped beating: gone
    later = RequestSpool(tmp_path, instance="task-c", stale_after_s=STALE)
    try:
        assert later.adopted == 1 and [i for i, _ in later.oldest(5)] == ["theirs-1"]
    finally:
        later.close()


def test_without_heartbeats_the_file_lock_decides_as_before(tmp_path: Path) -> None:
    other = RequestSpool(tmp_path, instance="task-a")
    other.append("theirs-1", record_payload(record(9)))
    mine = RequestSpool(tmp_path, instance="task-b")
    try:
        assert mine.adopted == 0  # its flock is held: a live process on this machine
    finally:
        mine.close()
    other.close()
    later = RequestSpool(tmp_path, instance="task-c")
    try:
        assert later.adopted == 1
    finally:
        later.close()
