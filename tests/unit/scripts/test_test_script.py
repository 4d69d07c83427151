"""scripts/test's closing line stands alone, whatever was printed before it without a newline."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def test_the_totals_line_is_alone_even_after_an_unterminated_exit_message(tmp_path: Path) -> None:
    main = tmp_path / "main.log"
    main.write_text("....s\nsome library: bye" + "3 passed, 1 skipped in 2.0s\n")
    vllm = tmp_path / "vllm.log"
    vllm.write_text("2 passed, 1 failed, 1 error in 9s\n")
    # What scripts/test does: a library prints at exit without a newline, then the totals come.
    out = subprocess.run(
        [
            "bash",
            "-c",
            f'printf "Exiting cleanly."; python3 scripts/test_totals.py {main} {vllm} '
            f"{tmp_path / 'absent.log'}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[-1] == "5 passed, 2 failed, 1 skipped"
    assert out.splitlines()[0] == "Exiting cleanly."


def test_scripts_test_ends_with_the_totals_script() -> None:
    lines = [line for line in (PROJECT_ROOT / "scripts" / "test").read_text().splitlines() if line.strip()]
    assert lines[-2:] == [
        "python3 scripts/test_totals.py var/pytest-main.log var/pytest-serial.log var/pytest-vllm.log "
        "var/pytest-agents.log",
        "exit $status",
    ]


def test_scripts_serve_installs_no_dev_extras() -> None:
    serve = (PROJECT_ROOT / "scripts" / "serve").read_text()
    assert (
        'ensure_venv "${TTS_SERVE_EXTRAS:-}"' in serve  # the CPU engine's extra only when asked
        and "dev" not in serve.split("ensure_venv", 1)[1].splitlines()[0].split("#")[0]
    )
