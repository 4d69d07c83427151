"""The playground's controls and failure paths in headless Chromium against a real uvicorn server.

Stop and Play again while audio is still playing (speed 0.25 makes playback outlast the stream), the status saying
"Playing" until the audio has ended, the waveform of the whole utterance clearing on a new request, voice names,
deleting a custom voice, the clone hint's limits, missing-key errors in the page's words, and a server killed with
SIGKILL mid-stream: the page says the connection was lost and the audio received so far downloads as a WAV whose
length is exactly what arrived.
"""

from __future__ import annotations

import io
import math
import time
import wave
from pathlib import Path

import httpx
import pytest

from core.clone import MAX_REFERENCE_SECONDS, MIN_REFERENCE_SECONDS
from tests.e2e.conftest import RunningServer, start_server, stop_server
from tests.e2e.test_playground import KEY, browser, server  # noqa: F401 - the same fixtures: Chromium, a keyed server

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {KEY}"}
SENTENCE = "Hello! This is the playground streaming speech while it is being generated. "


def open_page(driver, base_url: str, key: str | None = KEY) -> None:  # noqa: ANN001 - a selenium WebDriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/playground")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{base_url}/playground")
    if key:
        driver.find_element(By.ID, "api-key").send_keys(key, Keys.TAB)
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#voice option")) > 0)


def set_value(driver, element_id: str, value: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def page_stats(driver) -> dict:  # noqa: ANN001
    return driver.execute_script("return window.playgroundStats")


def status(driver) -> str:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "status").text


def lit_columns(driver) -> int:  # noqa: ANN001
    """Canvas columns with any waveform pixel (the background is dark blue, the stroke teal)."""
    return driver.execute_script("""
        const c = document.getElementById('wave'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lit = 0;
        for (let x = 0; x < c.width; x++) {
          for (let y = 0; y < c.height; y++) { if (d[(y * c.width + x) * 4 + 1] > 100) { lit++; break; } }
        }
        return lit;""")


def test_stop_and_play_again_work_while_audio_is_still_playing(server: RunningServer, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    open_page(driver, server.base_url)
    set_value(driver, "text", SENTENCE)
    set_value(driver, "speed", "0.25")  # four times as long to hear as to make: playback outlasts the stream
    driver.find_element(By.ID, "play").click()
    WebDriverWait(driver, 180).until(lambda d: page_stats(d)["done"])
    stats = page_stats(driver)
    assert stats["error"] is None and stats["playing"], stats  # the stream is over, the audio is not
    assert status(driver) == "Playing…"
    assert driver.find_element(By.ID, "stop").is_enabled()
    driver.find_element(By.ID, "stop").click()
    stats = page_stats(driver)
    assert not stats["playing"] and stats["outcome"] == "stopped" and stats["stoppedSources"] > 0
    assert status(driver).startswith("Stopped after")
    assert not driver.find_element(By.ID, "stop").is_enabled()

    # Play again while playing: the first run's sources are cut, the second run owns the page and plays to the end.
    driver.find_element(By.ID, "play").click()
    WebDriverWait(driver, 180).until(lambda d: page_stats(d)["done"])
    first = page_stats(driver)
    assert first["playing"] and first["runs"] == 2, first
    set_value(driver, "speed", "1")
    set_value(driver, "text", "Again.")
    driver.find_element(By.ID, "play").click()
    assert page_stats(driver)["stoppedSources"] > first["stoppedSources"]
    WebDriverWait(driver, 180).until(lambda d: page_stats(d)["outcome"] == "done")
    final = page_stats(driver)
    assert final["runs"] == 3 and final["error"] is None and not final["playing"]
    assert final["playbackEndAt"] >= final["streamEndAt"]  # "Playing" lasted until the audio ended
    assert status(driver) == f"Done: {final['streamSamples'] / 16000:.2f} s of audio."


def test_the_waveform_shows_the_whole_utterance_and_clears_on_a_new_request(
    server: RunningServer,  # noqa: F811 - the imported fixture
    browser,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    open_page(driver, server.base_url)
    assert lit_columns(driver) == 0
    set_value(driver, "text", SENTENCE * 2)
    driver.find_element(By.ID, "play").click()
    WebDriverWait(driver, 180).until(lambda d: page_stats(d)["done"])
    stats = page_stats(driver)
    assert stats["error"] is None, stats
    # one peak per 10 ms of every chunk received (160 samples at 16 kHz, a partial block rounds up), across the width
    assert stats["wavePeaks"] >= math.floor(stats["streamSamples"] / 160)
    assert lit_columns(driver) == driver.execute_script("return document.getElementById('wave').width")

    driver.find_element(By.ID, "text").clear()  # an empty text: the server refuses it, the old waveform goes
    driver.find_element(By.ID, "play").click()
    WebDriverWait(driver, 30).until(lambda d: page_stats(d)["outcome"] == "failed")
    assert status(driver).startswith("Speech failed: 400 VALIDATION_ERROR")
    assert lit_columns(driver) == 0 and page_stats(driver)["wavePeaks"] == 0


def test_voice_names_a_custom_voice_deleted_and_the_clone_limits(server: RunningServer, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    made = httpx.post(
        f"{server.base_url}/v1/tts/generate",
        headers=AUTH,
        timeout=120,
        json={"text": "A voice to delete.", "format": "wav", "stream": False},
    )
    assert made.status_code == 200
    voice = httpx.post(
        f"{server.base_url}/v1/audio/voices",
        headers=AUTH,
        timeout=60,
        json={"from_request_id": made.headers["X-Server-Request-ID"], "name": "Short-lived"},
    ).json()
    driver = browser
    open_page(driver, server.base_url)
    select = Select(driver.find_element(By.ID, "voice"))
    names = [option.text for option in select.options]
    builtins = httpx.get(f"{server.base_url}/v1/audio/voices", headers=AUTH, timeout=10).json()["voices"]
    assert names == [v["name"] + (" (custom)" if v["type"] == "custom" else "") for v in builtins]
    assert "Default" in names and "Short-lived (custom)" in names
    delete = driver.find_element(By.ID, "delete-voice")
    assert not delete.is_enabled()  # a built-in voice is selected
    select.select_by_value(voice["id"])
    assert delete.is_enabled()
    delete.click()
    note = driver.find_element(By.ID, "voice-status")
    WebDriverWait(driver, 30).until(lambda d: note.text.startswith("Deleted"))
    assert note.text == "Deleted Short-lived (custom)."
    assert "Short-lived (custom)" not in [o.text for o in Select(driver.find_element(By.ID, "voice")).options]
    assert (
        httpx.get(f"{server.base_url}/v1/audio/voices/{voice['id']}", headers=AUTH, timeout=10).status_code
        == 404
    )

    hint = driver.find_element(By.ID, "clone-note").text
    assert f"{MIN_REFERENCE_SECONDS:g}–{MAX_REFERENCE_SECONDS:g} s" in hint, hint


def test_missing_key_errors_speak_to_the_page(server: RunningServer, browser, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ask = "This server needs an API key: enter your API key above."
    driver = browser
    open_page(driver, server.base_url, key=None)
    # the voice list is public (built-in voices); speaking and cloning need the key
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#voice option")) > 0)
    assert driver.find_element(By.ID, "voice-status").text == ""
    driver.find_element(By.ID, "play").click()
    WebDriverWait(driver, 30).until(lambda d: page_stats(d)["outcome"] == "failed")
    assert status(driver) == ask

    clip = tmp_path / "clip.wav"
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(bytes(2 * 16000 * 2))
    driver.find_element(By.ID, "clone-file").send_keys(str(clip))
    driver.find_element(By.ID, "clone-name").send_keys("No key")
    driver.find_element(By.ID, "clone").click()
    note = driver.find_element(By.ID, "clone-note")
    WebDriverWait(driver, 30).until(lambda d: note.text == ask)
    assert driver.find_element(By.ID, "clone").is_enabled()  # the button is back for the next try

    driver.find_element(By.ID, "api-key").send_keys("not-the-key\t")
    WebDriverWait(driver, 30).until(
        lambda d: "enter a valid API key above" in d.find_element(By.ID, "voice-status").text
    )


def test_a_server_killed_mid_stream_is_reported_and_the_received_audio_downloads(
    demo_model_dir: Path,
    tmp_path: Path,
    browser,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    doomed = start_server(demo_model_dir, tmp_path / "server.log", {"TTS_SR_ENABLED": "false"})
    try:
        driver = browser
        open_page(driver, doomed.base_url, key=None)
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#voice option")) > 0)
        set_value(driver, "text", SENTENCE * 8)
        driver.find_element(By.ID, "play").click()
        WebDriverWait(driver, 180).until(lambda d: page_stats(d)["streamSamples"] > 0)
        doomed.process.kill()  # SIGKILL: no goodbye, the chunked answer just stops
        doomed.process.wait(timeout=30)
        WebDriverWait(driver, 60).until(lambda d: page_stats(d)["outcome"] == "failed")
        stats = page_stats(driver)
        assert not stats["error"].startswith("Speech failed"), (
            stats
        )  # it was mid-stream, not a refused request
        assert "The connection to the server was lost mid-stream" in stats["error"]
        received = stats["streamSamples"]
        assert f"The {received / 16000:.2f} s of audio received so far can be downloaded." in stats["error"]
        WebDriverWait(driver, 120).until(lambda d: not page_stats(d)["playing"])  # what arrived plays out
        assert status(driver) == stats["error"]

        downloads = tmp_path / "downloads"
        downloads.mkdir()
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        assert driver.find_element(By.ID, "download").is_enabled()
        driver.find_element(By.ID, "download").click()
        target = downloads / "spark-tts.wav"
        deadline = time.monotonic() + 30
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        with wave.open(io.BytesIO(target.read_bytes())) as got:
            assert (got.getframerate(), got.getnchannels(), got.getsampwidth()) == (16000, 1, 2)
            assert got.getnframes() == received  # every sample that arrived, nothing more

        driver.find_element(By.ID, "play").click()  # the server is gone: a network failure before any answer
        WebDriverWait(driver, 60).until(lambda d: page_stats(d)["outcome"] == "failed")
        assert status(driver) == (
            "Speech failed: could not reach the server (the network is down or the server is not running)."
        )
    finally:
        if doomed.process.poll() is None:
            stop_server(doomed)


def test_every_asset_is_served_and_has_no_third_party_address(server: RunningServer) -> None:  # noqa: F811
    import re

    from api.service.playground import ASSETS

    page = httpx.get(f"{server.base_url}/playground", timeout=10).text
    for name in ASSETS:
        assert f'"/playground/{name}"' in page, name  # the page loads it
        answer = httpx.get(f"{server.base_url}/playground/{name}", timeout=10)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(ASSETS[name])
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", answer.text), name
