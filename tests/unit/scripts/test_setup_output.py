"""What scripts/serve and scripts/test print while they install (scripts/_venv.sh): a progress line while a long
install runs, and pip's output without setuptools' licence deprecation box."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VENV_SH = ROOT / "scripts" / "_venv.sh"

# What pip -q prints when setuptools builds this project (setuptools 80: `license = { text = ... }`), between two
# lines that must stay.
LICENCE_WALL = """\
  /venv/lib/python3.12/site-packages/setuptools/config/_apply_pyprojecttoml.py:82: BuildBackendWarning: \
`project.license` as a TOML table is deprecated
  !!

          ********************************************************************************
          Please use a simple string containing a SPDX expression for `project.license`. You can also use \
`project.license-files`. (Both options available on setuptools>=77.0.0).

          By 2027-Feb-18, you need to update your project and remove deprecated calls
          or your builds will no longer be supported.

          See https://packaging.python.org/en/latest/guides/writing-pyproject-toml/#license for details.
          ********************************************************************************

  !!
    corresp(dist, value, root_dir)
"""


def _bash(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'source "{VENV_SH}"\n{script}'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_quiet_pip_drops_the_licence_wall_and_keeps_everything_else(tmp_path: Path) -> None:
    fake = tmp_path / "fake_pip_output.txt"
    fake.write_text(
        "before\nWARNING: Location 'x' is ignored: it is neither a file nor a directory.\n"
        + LICENCE_WALL
        + LICENCE_WALL
        + "ERROR: a real error\n"
    )
    fake_python = tmp_path / "python"
    fake_python.write_text(f'#!/bin/sh\ncat "{fake}" >&2\nexit 3\n')
    fake_python.chmod(0o755)
    done = _bash(f'PY="{fake_python}"\nquiet_pip install -q -e . && echo ok || echo "failed $?"', tmp_path)
    assert done.stdout.splitlines() == ["before", "ERROR: a real error", "failed 3"], done.stdout


def test_a_long_install_prints_progress_and_keeps_its_status(tmp_path: Path) -> None:
    done = _bash(
        "PROGRESS_EVERY_S=1\nwith_progress torch sleep 2.5\n"
        'with_progress torch sh -c "exit 4" || echo "status $?"',
        tmp_path,
    )
    lines = done.stdout.splitlines()
    assert lines[:2] == ["[setup] torch: still installing (1 s)", "[setup] torch: still installing (2 s)"], (
        lines
    )
    assert lines[-1] == "status 4"


def test_serve_after_test_and_back_installs_the_project_once(tmp_path: Path) -> None:
    """The stamp is per extras, but a dev install satisfies serving: scripts/test, scripts/serve, scripts/test
    installs the project once (each install is one line in the fake pip's log)."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "_venv.sh").write_text(VENV_SH.read_text())
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    log = tmp_path / "pip.log"
    fake_python = root / ".venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    fake_python.write_text(f'#!/bin/sh\n[ "$1" = "-c" ] && exit 0\necho "$@" >> "{log}"\n')
    fake_python.chmod(0o755)
    for extras in ("dev", "", "dev", ""):
        done = subprocess.run(
            ["bash", "-c", f'source "{root}/scripts/_venv.sh"\nensure_venv "{extras}"'],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    installs = log.read_text().splitlines()
    assert len(installs) == 1 and installs[0].endswith("[dev]"), installs


def test_serve_first_then_test_installs_the_dev_extras_once(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "_venv.sh").write_text(VENV_SH.read_text())
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    log = tmp_path / "pip.log"
    fake_python = root / ".venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    fake_python.write_text(f'#!/bin/sh\n[ "$1" = "-c" ] && exit 0\necho "$@" >> "{log}"\n')
    fake_python.chmod(0o755)
    for extras in ("", "dev", "", "dev"):
        subprocess.run(
            ["bash", "-c", f'source "{root}/scripts/_venv.sh"\nensure_venv "{extras}"'],
            cwd=root,
            check=True,
            capture_output=True,
            timeout=60,
        )
    installs = log.read_text().splitlines()
    assert [line.endswith("[dev]") for line in installs] == [False, True], installs


def test_the_project_gives_setuptools_nothing_to_warn_about() -> None:
    """The box is not printed at all: the licence is an SPDX string (a TOML table is what setuptools >= 77
    warns about, with its source line after the box), and the build requires a setuptools that reads one."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["project"]["license"] == "Apache-2.0"
    assert config["build-system"]["requires"] == ["setuptools>=77"]
