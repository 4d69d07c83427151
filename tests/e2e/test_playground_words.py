""" "Play with word highlighting" in headless Chromium against a real uvicorn server: it sends the page's sample rate,
latency and speed as Play does, Stop ends it while audio plays, and a refused request is shown in its words."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.test_playground import browser, server  # noqa: F401 - the same fixtures: Chromium, a keyed server
from tests.e2e.test_playground_controls import open_page, set_value

pytestmark = pytest.mark.e2e

WORDS = "One two three four five six seven eight."


def _words(driver) -> dict:  # noqa: ANN001 - a selenium WebDriver
    return driver.execute_script("return window.playgroundWords")


def _choose(driver, element_id: str, value: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, element_id)).select_by_value(value)


def test_word_highlighting_uses_the_pages_rate_latency_and_speed(server: RunningServer, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, server.base_url)
    set_value(browser, "text", WORDS)
    _choose(browser, "rate", "24000")
    _choose(browser, "latency", "lowest")
    set_value(browser, "speed", "1.5")
    browser.find_element(By.ID, "play-words").click()
    WebDriverWait(browser, 180).until(lambda d: _words(d)["done"])
    stats = _words(browser)
    assert stats["error"] is None and stats["outcome"] == "done", stats
    sent = stats["body"]
    assert (sent["sample_rate"], sent["latency"], sent["speed"], sent["timestamps"]) == (
        24000,
        "lowest",
        1.5,
        "word",
    )
    assert stats["sampleRate"] == 24000 and stats["words"] == 8 and stats["audioSeconds"] > 0.2
    heard = [index for index, _ in stats["highlights"] if index >= 0]
    assert len(set(heard)) >= 3 and heard == sorted(heard)
    assert browser.find_element(By.ID, "words-status").text.startswith("Done:")


def test_stop_ends_word_highlighting_while_audio_plays(server: RunningServer, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, server.base_url)
    set_value(browser, "text", WORDS + " " + WORDS)
    set_value(browser, "speed", "0.25")  # playback outlasts the stream by far
    play, stop = browser.find_element(By.ID, "play-words"), browser.find_element(By.ID, "stop-words")
    assert not stop.is_enabled()
    play.click()
    WebDriverWait(browser, 180).until(lambda d: _words(d)["audioSeconds"] > 0)
    assert stop.is_enabled() and not play.is_enabled()
    stop.click()
    WebDriverWait(browser, 10).until(lambda d: _words(d)["done"])
    stats = _words(browser)
    assert stats["outcome"] == "stopped" and stats["error"] is None, stats
    assert play.is_enabled() and not stop.is_enabled()
    assert browser.find_element(By.ID, "words-status").text.startswith("Stopped after")
    assert not browser.find_elements(By.CSS_SELECTOR, "#words span.current")  # no word left lit


def test_a_refused_request_is_shown_next_to_the_button(server: RunningServer, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, server.base_url)
    set_value(browser, "text", WORDS)
    set_value(browser, "speed", "9")  # out of 0.25-4: a 400 naming speed
    browser.find_element(By.ID, "play-words").click()
    WebDriverWait(browser, 60).until(lambda d: _words(d)["done"])
    stats = _words(browser)
    assert stats["outcome"] == "failed", stats
    line = browser.find_element(By.ID, "words-status")
    assert "400 VALIDATION_ERROR" in line.text and "'speed'" in line.text, line.text
    assert line.get_attribute("class") == "error" and line.is_displayed()
    assert browser.find_element(By.ID, "play-words").is_enabled()
