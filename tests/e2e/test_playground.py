"""The web playground in a real headless browser (Debian's chromium and chromedriver, driven by selenium).

A real uvicorn server with the demo model and an API key; the browser types the key and the text, presses Play,
and the page's own numbers are checked: audio was scheduled before the stream ended, the shown time to first
audio is a number, and every streamed sample was scheduled for playback. A screenshot is kept under
var/test-artifacts/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PROJECT_ROOT, RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e

KEY = "playground-test-key"
ARTIFACTS = PROJECT_ROOT / "var" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
LONG_TEXT = ("Hello! This is the playground streaming speech while it is being generated. " * 3).strip()


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {
        "TTS_AUTH_ENABLED": "true",
        "TTS_API_KEYS": KEY,
        "TTS_SR_ENABLED": "false",
        "TTS_VOICE_DIR": str(tmp_path_factory.mktemp("playground-voices")),
    }
    running = start_server(demo_model_dir, tmp_path_factory.mktemp("playground") / "server.log", env)
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # A fake microphone (a beeping tone) that needs no permission prompt: the page's MediaRecorder really records.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1100,1400",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ):
        options.add_argument(flag)
    # The driver path is given: selenium-manager never downloads anything.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_streams_audio_and_shows_its_numbers(server: RunningServer, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(f"{server.base_url}/")  # redirects to /playground
    assert driver.current_url.endswith("/playground")
    key = driver.find_element(By.ID, "api-key")
    key.send_keys(KEY, Keys.TAB)  # change event: stored in session storage, voices loaded with it
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#voice option")) > 0)
    assert KEY not in driver.current_url
    assert driver.execute_script("return sessionStorage.getItem('spark-tts-playground-api-key')") == KEY
    note = driver.find_element(By.ID, "model-note")
    WebDriverWait(driver, 10).until(lambda d: note.is_displayed())
    assert "demo model" in note.text

    text = driver.find_element(By.ID, "text")
    text.clear()
    text.send_keys(LONG_TEXT)
    driver.find_element(By.ID, "play").click()
    WebDriverWait(driver, 180).until(lambda d: d.execute_script("return window.playgroundStats.done"))
    stats = driver.execute_script("return window.playgroundStats")
    assert stats["error"] is None, stats
    assert stats["firstAudioAt"] < stats["streamEndAt"]  # playback began while the stream was still arriving
    assert stats["streamSamples"] > 16000 and stats["scheduledSamples"] == stats["streamSamples"]
    assert re.fullmatch(r"\d+ ms", driver.find_element(By.ID, "ttfa").text)
    assert re.fullmatch(r"\d+\.\d{3}", driver.find_element(By.ID, "rtf").text)
    shown_seconds = float(driver.find_element(By.ID, "audio-seconds").text.removesuffix(" s"))
    assert shown_seconds == pytest.approx(stats["streamSamples"] / 16000, abs=0.01)

    driver.find_element(By.ID, "normalize").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "normalized").text.strip())
    assert driver.find_elements(By.CSS_SELECTOR, "#chunks li")
    assert not driver.find_element(By.ID, "download").get_attribute("disabled")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "playground.png"))


def _open_with_key(driver, server: RunningServer) -> None:  # noqa: ANN001 - a selenium WebDriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{server.base_url}/playground")
    key = driver.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys(KEY, Keys.TAB)


def test_the_highlighted_word_follows_the_audio(server: RunningServer, browser) -> None:
    """Streamed timestamps drive the highlight: it moves from word to word, in order, while the audio plays."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    _open_with_key(driver, server)
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#voice option")) > 0)
    text = driver.find_element(By.ID, "text")
    text.clear()
    text.send_keys("One two three four five six seven eight.")
    driver.find_element(By.ID, "play-words").click()
    WebDriverWait(driver, 180).until(lambda d: d.execute_script("return window.playgroundWords.done"))
    stats = driver.execute_script("return window.playgroundWords")
    assert stats["error"] is None, stats
    assert stats["words"] == 8 and stats["audioSeconds"] > 0.5
    heard = [(index, t) for index, t in stats["highlights"] if index >= 0]
    indices = [index for index, _ in heard]
    assert len(set(indices)) >= 3 and indices == sorted(indices)  # it moved on, word by word, in order
    assert all(0 <= t <= stats["audioSeconds"] for _, t in heard)  # while the audio was playing
    assert [el.text for el in driver.find_elements(By.CSS_SELECTOR, "#words span")] == text.get_attribute(
        "value"
    ).split()


def test_the_page_records_a_clip_and_clones_a_voice_from_it(server: RunningServer, browser) -> None:
    """The browser's own MediaRecorder upload (WebM/Opus) through the page's form to the voice library."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    _open_with_key(driver, server)
    note = driver.find_element(By.ID, "clone-note")
    driver.find_element(By.ID, "record").click()
    time.sleep(3.0)
    driver.find_element(By.ID, "record").click()
    WebDriverWait(driver, 10).until(lambda d: note.text.startswith("Recorded"))
    driver.find_element(By.ID, "clone-name").send_keys("Browser voice")
    driver.find_element(By.ID, "clone").click()
    WebDriverWait(driver, 60).until(lambda d: "…" not in note.text and "Recorded" not in note.text)  # done
    assert note.text.startswith("Created voice_"), note.text
    select = driver.find_element(By.ID, "voice")
    voice_id = select.get_attribute("value")
    assert voice_id.startswith("voice_")
    assert select.find_element(By.CSS_SELECTOR, "option:checked").text == "Browser voice (custom)"
    stored = httpx.get(
        f"{server.base_url}/v1/audio/voices/{voice_id}", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert stored.status_code == 200 and stored.json()["reference_seconds"] > 2.0


def test_the_page_is_served_with_a_strict_policy_and_no_third_party_requests(server: RunningServer) -> None:
    page = httpx.get(f"{server.base_url}/playground", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    for path in (
        "/playground",
        "/playground/playground.js",
        "/playground/keep_voice.js",
        "/playground/playground.css",
        "/playground/words.js",
    ):
        body = httpx.get(f"{server.base_url}{path}", timeout=10).text
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", body), path
    assert "<script>" not in page.text and not re.search(r"\son[a-z]+\s*=", page.text)  # no inline code
    assert httpx.get(f"{server.base_url}/playground/../app.py", timeout=10).status_code == 404


def test_the_playground_can_be_switched_off(demo_model_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from api import create_app
    from shared.settings import Settings

    app = create_app(Settings(model_dir=demo_model_dir, auth_enabled=False, playground_enabled=False))
    client = TestClient(app)  # no lifespan: nothing is loaded
    assert client.get("/playground").status_code == 404
    assert client.get("/").status_code == 404


def test_the_page_keeps_the_voice_of_a_synthesis(server: RunningServer, browser) -> None:
    """After Play, "Keep this voice" saves the voice the request spoke with (its 32 globals) and selects it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    driver.get(f"{server.base_url}/playground")
    key = driver.find_element(By.ID, "api-key")
    key.clear()
    key.send_keys(KEY, Keys.TAB)
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#voice option")) > 0)
    assert not driver.find_element(By.ID, "keep-panel").is_displayed()  # nothing to keep yet
    Select(driver.find_element(By.ID, "voice")).select_by_value(
        "default"
    )  # a style voice: the model invents one
    text = driver.find_element(By.ID, "text")
    text.clear()
    text.send_keys("Keep the voice that says this.")
    driver.find_element(By.ID, "play").click()
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return window.playgroundStats.done"))
    assert driver.execute_script("return window.playgroundStats.error") is None
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "keep-panel").is_displayed())
    name = driver.find_element(By.ID, "keep-name")
    name.clear()
    name.send_keys("Liked one")
    driver.find_element(By.ID, "keep").click()
    status = driver.find_element(By.ID, "keep-status")
    WebDriverWait(driver, 30).until(
        lambda d: status.text and "…" not in status.text
    )  # past "Keeping the voice…"
    assert status.text.startswith("Kept as voice_"), status.text
    select = driver.find_element(By.ID, "voice")
    voice_id = select.get_attribute("value")
    assert select.find_element(By.CSS_SELECTOR, "option:checked").text == "Liked one (custom)"
    kept = httpx.get(
        f"{server.base_url}/v1/audio/voices/{voice_id}", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert (
        kept.status_code == 200
        and len(kept.json()["global_tokens"]) == 32
        and kept.json()["name"] == "Liked one"
    )
    assert "semantic_tokens" not in kept.json()  # the voice only, no recording
