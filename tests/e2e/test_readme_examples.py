"""Every example of the README and the API pages that talks to a server runs as written against a real server on
the demo checkpoint.

The fenced `bash` and `python` blocks are taken from README.md and the API reference pages (docs/api/, in the order
of EXAMPLE_PAGES: any block that names localhost:8000, plus the `python -m core.clone` one). What is substituted, and nothing else: `localhost:8000` becomes this server's
127.0.0.1 port; the placeholders a reader fills in are filled the same way (`$KEY` in the environment, the
recordings `me.wav`, `reference.wav` and `clip.webm` and the document `book.epub` as files in the working directory, `MODEL_DIR` as the demo
checkpoint, `voice_3f2a…` as the id the create example answered). curl runs with a `.curlrc` of `--fail-with-body`
so an HTTP error fails the example; every file an example writes is checked. The server runs as `scripts/serve`
runs it on the demo model: auth off, on loopback (so `$KEY` and `YOUR_KEY` are sent and not needed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.audio_samples import browser_webm_opus, voiced, wav_bytes
from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import RunningServer
from tests.e2e.test_jobs import build_epub

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# README first, then the API pages; the voice library's create example comes before the examples that use its id.
EXAMPLE_PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs" / "api").glob("*.md"))]
PLACEHOLDER_VOICE = "voice_3f2a…"


def readme_examples() -> list[tuple[str, str, str]]:
    """(page:line, language, code) of every block that talks to a server or runs the clone CLI."""
    out = []
    for page in EXAMPLE_PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.S | re.M):
            indent, language, body = match.groups()
            if language in ("bash", "python") and (
                "localhost:8000" in body or "python -m core.clone" in body
            ):
                code = "\n".join(line[len(indent) :] for line in body.splitlines())
                where = f"{page.relative_to(PROJECT_ROOT)} line {text[: match.start()].count(chr(10)) + 1}"
                out.append((where, language, code))
    return out


def bash_commands(code: str) -> list[str]:
    """A bash block's commands, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
def workdir(tmp_path: Path, demo_model_dir: Path) -> Path:
    (tmp_path / "me.wav").write_bytes(wav_bytes(voiced(4.0, seed=41)))
    (tmp_path / "reference.wav").write_bytes(wav_bytes(voiced(6.4, seed=42)))
    (tmp_path / "clip.webm").write_bytes(browser_webm_opus(5.0))
    build_epub(tmp_path / "book.epub", [("The Harbour", "Boats came in."), ("A Letter", "It was short.")])
    (tmp_path / ".curlrc").write_text("fail-with-body\nsilent\nshow-error\n")
    return tmp_path


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env.update(
        {
            "HOME": str(workdir),
            "CURL_HOME": str(workdir),
            "KEY": "readme-key",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def _is_audio(path: Path) -> bool:
    data = path.read_bytes()
    return data[:4] == b"RIFF" and len(data) > 44 + 3200


def test_the_readme_has_the_examples_this_test_runs() -> None:
    languages = [language for _, language, _ in readme_examples()]
    assert languages.count("python") >= 2 and languages.count("bash") >= 4


@pytest.fixture
def no_voices_left(server: RunningServer) -> Iterator[None]:
    """The examples create custom voices on the shared server (auth off: one anonymous owner); remove what they
    leave, so other tests see the server's voices as before."""
    before = {v["id"] for v in httpx.get(f"{server.base_url}/v1/audio/voices", timeout=10).json()["voices"]}
    yield
    for voice in httpx.get(f"{server.base_url}/v1/audio/voices", timeout=10).json()["voices"]:
        if voice["id"] not in before:
            assert (
                httpx.delete(f"{server.base_url}/v1/audio/voices/{voice['id']}", timeout=10).status_code
                == 204
            )


def test_every_readme_example_runs_as_written(
    server: RunningServer, workdir: Path, demo_model_dir: Path, no_voices_left: None
) -> None:
    port = server.base_url.rsplit(":", 1)[1]
    env = _env(workdir)
    voice_id = None
    ran = 0
    for where, language, code in readme_examples():
        code = code.replace("localhost:8000", f"127.0.0.1:{port}")
        if language == "python":
            result = subprocess.run(
                [sys.executable, "-c", code],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, f"{where}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            ran += 1
            continue
        for command in bash_commands(code):
            if PLACEHOLDER_VOICE in command:
                assert voice_id, f"{where}: the voice id comes from the create example before it"
                command = command.replace(PLACEHOLDER_VOICE, voice_id)
            command = command.replace("MODEL_DIR", str(demo_model_dir))
            result = subprocess.run(
                ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, (
                f"{where}: {command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
            ran += 1
            if "-F audio_sample=@" in command:
                voice_id = json.loads(result.stdout)["id"]
            if "python -m core.clone" in command:
                assert len(json.loads(result.stdout)["global_tokens"]) == 32
            written = re.search(r"-o (\S+)", command)
            if written and written.group(1).endswith(".wav"):
                assert _is_audio(workdir / written.group(1)), f"{where}: {written.group(1)} is not audio"
    assert ran >= 10
    assert (
        _is_audio(workdir / "hello.wav")
        and _is_audio(workdir / "out.wav")
        and _is_audio(workdir / "morning.wav")
    )
    assert json.loads((workdir / "voice.json").read_text())["id"] == voice_id
