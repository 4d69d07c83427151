"""Settings grouped by concern: flat names in, grouped reads out, unknown names named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shared.settings import FIELD_GROUP, FIELDS, GROUPS, Settings, unknown_variables


def test_every_name_is_in_one_group_and_no_group_is_named_like_a_setting() -> None:
    assert len(FIELD_GROUP) == sum(len(model.model_fields) for model in GROUPS.values())
    assert not set(GROUPS) & set(FIELD_GROUP)
    assert set(FIELDS) == set(FIELD_GROUP)
    assert all(field.description for field in FIELDS.values())


def test_flat_keyword_arguments_land_in_their_group() -> None:
    settings = Settings(max_text_chars=5, engine="vllm", guard_modes={"loop": "count"})
    assert settings.limits.max_text_chars == 5
    assert settings.llm.engine == "vllm"
    assert settings.guards.guard_modes == {"loop": "count"}
    assert settings.limits.max_text_chunks == 600  # the rest of the group keeps its defaults


def test_a_group_given_whole_and_a_flat_name_together() -> None:
    settings = Settings(limits={"max_text_chunks": 7}, max_text_chars=5)
    assert (settings.limits.max_text_chars, settings.limits.max_text_chunks) == (5, 7)
    given = Settings().limits.model_copy(update={"max_text_chunks": 9})
    settings = Settings(limits=given, max_text_chars=4)
    assert (settings.limits.max_text_chars, settings.limits.max_text_chunks) == (4, 9)


def test_a_name_that_is_no_setting_is_refused_with_the_likely_one() -> None:
    with pytest.raises(TypeError, match="'max_text_char'.*did you mean 'max_text_chars'"):
        Settings(max_text_char=5)
    with pytest.raises(TypeError, match="default_speaker"):
        Settings(default_speaker="Asha")  # read nowhere: removed
    with pytest.raises(TypeError, match="max_txt_chars"):
        Settings().model_copy(update={"max_txt_chars": 5})


def test_values_are_validated_in_their_group() -> None:
    with pytest.raises(ValueError, match="max_model_len"):
        Settings(max_model_len=10)  # ge=256


def test_environment_variables_keep_their_flat_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTS_MAX_MODEL_LEN", "1000")
    monkeypatch.setenv("tts_guard_mode", "count")  # case does not matter, as before
    monkeypatch.setenv("TTS_GUARD_MODES", '{"alignment": "off"}')  # JSON for a dict
    monkeypatch.setenv("TTS_MODEL_DIR", "")  # empty: unset
    monkeypatch.setenv("TTS_REQUEST_LOG_SPOOL_DIR", "")
    settings = Settings()
    assert settings.llm.max_model_len == 1000
    assert settings.guards.guard_mode == "count"
    assert settings.guards.guard_modes == {"alignment": "off"}
    assert settings.model.model_dir is None
    assert settings.usage.request_log_spool_dir is None


def test_a_keyword_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTS_MAX_MODEL_LEN", "1000")
    monkeypatch.setenv("TTS_MAX_NUM_SEQS", "3")
    settings = Settings(max_model_len=2000)
    assert (settings.llm.max_model_len, settings.llm.max_num_seqs) == (2000, 3)


def test_model_copy_takes_flat_names_and_leaves_the_original() -> None:
    original = Settings()
    copy = original.model_copy(update={"max_text_chars": 7, "engine": "vllm"})
    assert (copy.limits.max_text_chars, copy.llm.engine) == (7, "vllm")
    assert (original.limits.max_text_chars, original.llm.engine) == (50_000, "transformers")
    copy.stream.frame_ms = 20  # groups are copied too
    assert original.stream.frame_ms == 40


def test_derived_paths_and_the_voice_store() -> None:
    demo = Settings()
    assert demo.model.resolved_model_dir == Path("var/demo_model")
    assert demo.model.resolved_sr_dir == Path("var/demo_model/16kto48k")
    real = Settings(model_dir="/m", sr_dir="/sr")
    assert (real.model.resolved_model_dir, real.model.resolved_sr_dir) == (Path("/m"), Path("/sr"))
    assert demo.resolved_voice_store == "file"
    assert Settings(database_url="postgresql://x").resolved_voice_store == "postgres"
    assert Settings(supabase_url="https://x", supabase_key="k").resolved_voice_store == "supabase"
    assert Settings(voice_store="none", database_url="postgresql://x").resolved_voice_store == "none"


def test_an_unknown_variable_is_named_with_the_setting_it_most_probably_meant() -> None:
    environ = {
        "TTS_MAX_TXT_CHARS": "5",  # a typo
        "TTS_DECODE_BATCH_MAX": "16",  # a setting that no longer exists
        "tts_max_text_chars": "5",  # known (any case)
        "TTS_MODAL_GPU": "H100",  # the Modal deployment's own (checked where `modal deploy` reads them)
        "TTS_TEST_DATABASE_URL": "postgresql://x",  # the test suite's
        "TTS_WEIGHTS_MANIFEST": "m.json",  # read by core/weights.py
        "TTS_PG_PORT": "5432",  # scripts/start_services
        "HOME": "/root",
    }
    found = dict(unknown_variables(environ))
    assert set(found) == {"TTS_MAX_TXT_CHARS", "TTS_DECODE_BATCH_MAX"}
    assert found["TTS_MAX_TXT_CHARS"] == "TTS_MAX_TEXT_CHARS"
    assert found["TTS_DECODE_BATCH_MAX"] is None  # nothing close: no misleading guess


def test_start_up_warns_about_an_unknown_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from api.app import create_app

    monkeypatch.setenv("TTS_GUARD_MODE_S", "count")
    with caplog.at_level(logging.WARNING, logger="api.app"):
        create_app(Settings(auth_enabled=False, warmup=False, log_json=False))
    assert any(
        "TTS_GUARD_MODE_S" in r.getMessage() and "TTS_GUARD_MODES" in r.getMessage() for r in caplog.records
    )


def test_the_settings_table_has_one_section_per_group_and_the_modal_variables() -> None:
    from scripts.settings_table import settings_table
    from services.deployment.modal_deployment import ModalConfig

    table = settings_table()
    for group, model in GROUPS.items():
        assert f"## `{group}`" in table
        assert all(f"`TTS_{name.upper()}`" in table for name in model.model_fields)
    assert all(f"`{variable}`" in table for variable in ModalConfig.variables())
    assert "TTS_DEFAULT_SPEAKER" not in table


def test_a_mistyped_modal_variable_is_named(caplog: pytest.LogCaptureFixture) -> None:
    from services.deployment.modal_deployment import ModalConfig

    with caplog.at_level(logging.WARNING, logger="app"):
        config = ModalConfig.from_env({"TTS_MODAL_GPUS": "A100", "TTS_MODAL_CPU": "2"})
    assert config.gpu == ("H200",) and config.cpu == 2.0
    assert any(
        "TTS_MODAL_GPUS" in r.getMessage() and "TTS_MODAL_GPU" in r.getMessage() for r in caplog.records
    )
