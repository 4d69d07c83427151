"""The two HTTP synthesis bodies (`/v1/tts/generate`, `/v1/audio/speech`) treat fields alike: an unknown field is
ignored and named in X-Ignored-Fields, a near miss of a known one is a 400 naming the field it was meant to be, and
`language` takes English or Chinese and refuses any other language with a 400 saying what the model speaks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.http.fields import check_language
from api.protocols.native.schemas import TTSGenerateRequest
from api.protocols.openai.requests import OpenAISpeechRequest
from tests.demo_runtime import demo_client

ROUTES = {
    "native": ("/v1/tts/generate", "text", {"max_tokens": 20}),
    "openai": ("/v1/audio/speech", "input", {"max_tokens": 20, "response_format": "wav"}),
}


@pytest.fixture(scope="module")
def client(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with demo_client(demo_model_dir, tmp_path_factory.mktemp("voices")) as test_client:
        yield test_client


def _post(client: TestClient, route: str, **fields: object):
    path, text_field, base = ROUTES[route]
    return client.post(path, json={text_field: "Hi.", **base, **fields})


@pytest.mark.parametrize("route", ROUTES)
def test_an_unknown_field_is_ignored_and_named(client: TestClient, route: str) -> None:
    answer = _post(client, route, lang_code="a", volume_multiplier=1.0)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Ignored-Fields"] == "lang_code,volume_multiplier"
    assert "X-Ignored-Fields" not in _post(client, route).headers


@pytest.mark.parametrize("route", ROUTES)
def test_a_misspelt_field_is_refused_with_the_name_it_was_meant_to_be(client: TestClient, route: str) -> None:
    answer = _post(client, route, voices="alloy")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "voices" and "did you mean 'voice'?" in error["message"]


@pytest.mark.parametrize("route", ROUTES)
def test_language_english_or_chinese_passes_and_another_is_a_clear_400(
    client: TestClient, route: str
) -> None:
    for language in ("en", "en-US", "zh-CN", "Chinese"):
        assert _post(client, route, language=language).status_code == 200, language
    for language, words in (("fr", ["English (en)", "Chinese (zh)", "'fr'"]), ("hi-IN", ["no Hindi voice"])):
        answer = _post(client, route, language=language)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["param"] == "language" and all(w in error["message"] for w in words), error["message"]


def test_language_names_map_to_their_code() -> None:
    assert [check_language(v) for v in ("EN", "en_GB", "eng", "English", "zh-Hans", "cmn", "Mandarin")] == [
        "en",
        "en",
        "en",
        "en",
        "zh",
        "zh",
        "zh",
    ]
    assert check_language(None) is None
    for body in (TTSGenerateRequest, OpenAISpeechRequest):
        with pytest.raises(ValidationError):
            body.model_validate({"text": "Hi.", "input": "Hi.", "language": "de"})
