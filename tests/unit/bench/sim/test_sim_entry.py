"""bench/sim/__main__.py: the simulator's one entry point, one subcommand per question, and nothing of it left
beside the package."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from bench.sim import __main__ as entry

BENCH = Path(__file__).resolve().parents[4] / "bench"


def test_every_subcommand_names_a_module_with_a_main() -> None:
    for name, (module, what) in entry.SUBCOMMANDS.items():
        assert callable(importlib.import_module(f"bench.sim.{module}").main), name
        assert what, name


def test_the_listing_and_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main([]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in entry.SUBCOMMANDS)
    assert entry.main(["nope"]) == 2
    assert "unknown subcommand 'nope'" in capsys.readouterr().err


def test_a_subcommand_gets_its_own_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        entry.main(["alerts", "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m bench sim alerts")


def test_no_simulator_script_beside_the_package() -> None:
    assert sorted(p.name for p in BENCH.glob("sim_*.py")) == []
    assert not (BENCH / "simulate.py").exists()
