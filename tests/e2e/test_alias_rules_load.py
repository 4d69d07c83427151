"""The alias-rule attack on a real server: three stored dictionaries of 1,000 rules of 200 characters
named by requests of 10,000 characters. Each request completes (refused for its one giant word, after its rules
were applied), and `/v1/tts/health` keeps answering while they run (a regex alternation held the GIL ~54 s each)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.e2e
KEY = "alias-attack-key"
RULES, RULE_CHARS, TEXT_CHARS = 1000, 200, 10_000


def attack_rules(dictionary: int) -> list[dict[str, str]]:
    """Rules that share a long prefix with the text at every place (the regex's worst case)."""
    return [
        {
            "type": "alias",
            "string_to_replace": "a" * (RULE_CHARS - 8) + f"{dictionary}x{i:05d}"[:8].ljust(8, "z"),
            "alias": "b",
        }
        for i in range(RULES)
    ]


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        demo_model_dir,
        tmp_path_factory.mktemp("alias") / "server.log",
        {"TTS_AUTH_ENABLED": "true", "TTS_API_KEYS": KEY, "TTS_VOICE_DIR": str(tmp_path_factory.mktemp("v"))},
    )
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def locators(server: RunningServer) -> list[dict[str, str]]:
    found = []
    for d in range(3):
        answer = httpx.post(
            f"{server.base_url}/v1/pronunciation-dictionaries/add-from-rules",
            headers={"xi-api-key": KEY},
            json={"name": f"attack {d}", "rules": attack_rules(d)},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        made = answer.json()
        found.append({"pronunciation_dictionary_id": made["id"], "version_id": made["version_id"]})
    return found


async def test_health_answers_while_alias_rules_run(
    server: RunningServer, locators: list[dict[str, str]]
) -> None:
    body = {"text": "a" * TEXT_CHARS, "pronunciation_dictionary_locators": locators}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:

        async def attack() -> httpx.Response:
            return await client.post(
                "/v1/text-to-speech/default/with-timestamps", headers={"xi-api-key": KEY}, json=body
            )

        async def health() -> list[float]:
            waits = []
            for _ in range(20):
                started = time.perf_counter()
                assert (await client.get("/v1/tts/health")).status_code == 200
                waits.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)
            return waits

        answers, waits = await asyncio.gather(asyncio.gather(*(attack() for _ in range(4))), health())
    for answer in answers:  # done, and refused for the text's one giant word, not for the rules
        assert answer.status_code == 400, answer.text
        assert "letters per word" in answer.json()["detail"]["message"], answer.text
    assert max(waits) < 2.0, waits  # generous on 2 shared cores; the regex held health ~54 s per request
