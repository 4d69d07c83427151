"""Fixtures shared by every tier: the steering fixtures' path and one demo checkpoint per session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"

# Tests must not inherit a developer's real configuration.
for _name in list(os.environ):
    if _name.startswith("TTS_") and not _name.startswith("TTS_TEST_"):
        del os.environ[_name]


# Fixtures that stop or restart a server every test shares: a test using one runs in the serial pass.
SERIAL_FIXTURES = frozenset({"pg_control"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """scripts/test runs the suite twice: `-m "not serial"` over parallel workers, then `-m serial` alone. A test
    that stops a shared server (PostgreSQL through pg_control) would fail the other workers' tests meanwhile."""
    for item in items:
        if SERIAL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES}")
    return FIXTURES


def _file_stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def demo_model_dir() -> Iterator[Path]:
    """The demo checkpoint (seed 0), built once under var/ and reused across runs (the build is idempotent).

    Every worker and every server a test starts reads this one directory, so nothing may write into it: a test that
    lets a server change its model directory (the pin route's `save`) takes `writable_demo_dir` instead. A write
    fails this session at teardown, naming the files, instead of changing what unrelated servers load."""
    from core.demo.checkpoint import build_demo_checkpoint

    root = build_demo_checkpoint(PROJECT_ROOT / "var" / "test-demo-model", seed=0)
    before = _file_stamps(root)
    yield root
    after = _file_stamps(root)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"a test wrote into the shared demo checkpoint {root}: {changed}"


def private_demo_copy(demo_dir: Path, target: Path) -> Path:
    """A copy of the demo checkpoint a test may change: small files copied, weights (read, never written) linked."""
    for source in demo_dir.rglob("*"):
        if source.is_symlink() or not source.is_file():
            continue
        destination = target / source.relative_to(demo_dir)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.stat().st_size > 1_000_000:
            destination.symlink_to(source)
        else:
            shutil.copy2(source, destination)
    return target


@pytest.fixture
def writable_demo_dir(demo_model_dir: Path, tmp_path: Path) -> Path:
    """This test's own copy of the demo checkpoint (see `private_demo_copy`)."""
    return private_demo_copy(demo_model_dir, tmp_path / "model")


def wait_in_portal(client, predicate, timeout_s: float = 60.0) -> None:
    """Let a TestClient's event loop run until `predicate()` is true (start-up in the app's lifespan)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        client.portal.call(asyncio.sleep, 0.1)


@pytest.fixture(autouse=True)
def _not_shutting_down():
    """The shutdown flag (services/usage/shutdown.py) is process-wide, as a SIGTERM is: an app a test closed must not
    leave it set for the next test's sessions (which would end their cancelled requests as `interrupted`)."""
    from services.usage.shutdown import reset

    reset()
    yield
    reset()
