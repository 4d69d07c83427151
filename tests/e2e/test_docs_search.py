"""The docs site as a newcomer meets it: built with `mkdocs build --strict`, served over HTTP, searched in a real
headless Chromium (Material's own search). "quickstart", "getting started" and "first request" find the home page,
which is the getting-started page, first; the home shows no README.md as code text."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # one line per asset is noise in a test's output
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", "--site-dir", str(out)],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver (Debian packages; scripts/test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _search(driver, base: str, query: str) -> list[str]:
    """Type `query` into the site's search box and return the result links, best first."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base)
    box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
    driver.execute_script("arguments[0].focus()", box)
    box.send_keys(query)

    def links(d) -> list[str]:
        found = d.find_elements(By.CSS_SELECTOR, ".md-search-result__item > a.md-search-result__link")
        return [link.get_attribute("href") for link in found]

    # Each typed letter searches again: wait until the whole query's results show and stay the same.
    def settled(d) -> list[str] | bool:
        first = links(d)
        if not any(parse_qs(urlsplit(h).query).get("h") == [query] for h in first):  # the highlight names it
            return False
        time.sleep(0.5)
        return first if links(d) == first else False

    return WebDriverWait(driver, 30).until(settled)


@pytest.mark.parametrize("query", ["quickstart", "getting started", "first request"])
def test_search_finds_the_getting_started_page_first(site: str, browser, query: str) -> None:
    found = _search(browser, site, query)
    page = urlsplit(found[0])  # search.highlight adds ?h=...; a section adds #...
    assert f"{page.scheme}://{page.netloc}{page.path}" == site, (query, found[:5])


def test_the_home_is_the_getting_started_page(site: str, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site)
    article = browser.find_element(By.CSS_SELECTOR, "article")
    headings = [h.text.strip("¶ \n") for h in article.find_elements(By.CSS_SELECTOR, "h1, h2")]
    assert headings[:3] == ["Getting started", "Quickstart: two commands", "The first request"], headings
    code = " ".join(c.text for c in article.find_elements(By.CSS_SELECTOR, "code"))
    assert "scripts/serve" in code and "curl -N" in code
    assert "README.md" not in article.text


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("websocket", "api/websocket/"),
        ("runbook", "operate/runbook/"),
        ("pronunciation", "api/pronunciation/"),
    ],
)
def test_the_home_page_boost_does_not_take_over_other_searches(
    site: str, browser, query: str, page: str
) -> None:
    found = _search(browser, site, query)
    first = urlsplit(found[0])
    assert f"{first.scheme}://{first.netloc}{first.path}" == site + page, (query, found[:5])
