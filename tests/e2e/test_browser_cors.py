"""A browser app on another origin calls the service with the official OpenAI JS SDK (openai-node from npm).

tests/browser/ holds the page and a package.json/package-lock.json; `npm ci` there (scripts/test does it) installs
the SDK, whose ES modules the page loads through an import map. The page is served by a static server on one
loopback port, the API by a real uvicorn server on another with TTS_CORS_ORIGINS naming the page's origin, so
headless Chromium really preflights: openai-node's X-Stainless-* headers must be allowed and the metadata headers
exposed. The audio is decoded in the page with decodeAudioData.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PROJECT_ROOT, RunningServer, start_server, stop_server
from tests.e2e.test_playground import browser  # noqa: F401 - the same headless Chromium fixture
from tests.http_stub import static_server

pytestmark = pytest.mark.e2e

KEY = "browser-cors-key"
PAGES = PROJECT_ROOT / "tests" / "browser"


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    if not (PAGES / "node_modules" / "openai" / "index.mjs").exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed: scripts/test installs node and npm, then runs `npm ci` in tests/browser"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PAGES, check=True, timeout=300)
    with static_server(PAGES) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def api_server(
    page_origin: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_API_KEYS": KEY,
        "TTS_SR_ENABLED": "false",
        "TTS_CORS_ORIGINS": page_origin,
        "TTS_VOICE_DIR": str(tmp_path_factory.mktemp("cors-voices")),
    }
    running = start_server(demo_model_dir, tmp_path_factory.mktemp("cors") / "server.log", env)
    try:
        yield running
    finally:
        stop_server(running)


def test_openai_node_in_a_browser_gets_playable_audio_and_reads_the_headers(
    page_origin: str,
    api_server: RunningServer,
    browser,  # noqa: F811
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    assert (
        page_origin.rsplit(":", 1)[1] != api_server.base_url.rsplit(":", 1)[1]
    )  # two origins: CORS is in play
    browser.get(f"{page_origin}/openai_speech.html?api={api_server.base_url}&key={KEY}")
    WebDriverWait(browser, 180).until(lambda d: d.execute_script("return window.result"))
    result = browser.execute_script("return window.result")
    logs = browser.get_log("browser") if hasattr(browser, "get_log") else []

    sdk = result["sdk"]
    assert "error" not in sdk, (sdk, logs)
    assert sdk["riff"] == "RIFFWAVE" and sdk["bytes"] > 44
    assert sdk["decodedSeconds"] > 0.3  # decodeAudioData played it back into samples
    headers = sdk["headers"]
    assert headers["x-server-request-id"] and headers["x-request-id"]
    assert headers["x-voice"] and headers["x-sr-applied"] == "false"
    assert float(headers["x-audio-seconds"]) == pytest.approx(sdk["decodedSeconds"], abs=0.05)
    assert headers["x-sample-rate"] is not None

    plain = result["fetch"]
    assert "error" not in plain, (plain, logs)
    assert plain["status"] == 200 and plain["decodedSeconds"] > 0.2
    assert plain["headers"]["x-request-id"] == "page-fetch-1"  # the page's own id, echoed and readable
    assert plain["headers"]["x-voice"] and plain["headers"]["x-sr-applied"] == "false"
    assert int(plain["headers"]["x-audio-bytes"]) > 44
    assert plain["headers"]["x-ratelimit-remaining"] is not None


def test_a_page_from_an_origin_not_listed_is_refused_by_the_browser(
    page_origin: str,
    api_server: RunningServer,
    browser,  # noqa: F811
) -> None:
    """The same page on `localhost` (another origin than the listed 127.0.0.1 one): the browser blocks the answer."""
    from selenium.webdriver.support.ui import WebDriverWait

    other = page_origin.replace("127.0.0.1", "localhost")
    browser.get(f"{other}/openai_speech.html?api={api_server.base_url}&key={KEY}")
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return window.result"))
    result = browser.execute_script("return window.result")
    assert "error" in result["sdk"] and "error" in result["fetch"], result
