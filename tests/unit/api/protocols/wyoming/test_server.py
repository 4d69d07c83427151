"""The Wyoming server's connection cap stays well below the process's open-file limit (api/protocols/wyoming/server.py)."""

from __future__ import annotations

import resource

import pytest

from api.protocols.wyoming.server import connection_cap


@pytest.mark.parametrize(
    ("soft", "wanted", "cap"), [(1024, 64, 64), (128, 64, 32), (2, 64, 1), (resource.RLIM_INFINITY, 500, 500)]
)
def test_the_cap_leaves_three_quarters_of_the_files(
    monkeypatch: pytest.MonkeyPatch, soft: int, wanted: int, cap: int
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (soft, resource.RLIM_INFINITY))
    assert connection_cap(wanted) == cap
