"""The service's settings, grouped by concern. Every setting reads one environment variable, `TTS_<NAME>`.

Code reads a setting through its group, `settings.llm.max_model_len`; its variable keeps the flat name,
TTS_MAX_MODEL_LEN, whatever group it sits in, so a name is unique across all groups. The constructor and
`model_copy(update=...)` take the flat names too (`Settings(max_text_chars=5)` sets `settings.limits.max_text_chars`)
and refuse a name that is no setting. A TTS_ variable that names no setting is reported at start-up
(`unknown_variables`, warned about by api.create_app) with the setting it most probably meant.

Each group lives in the module of its concern beside this one (model, serving, access, library, deployment), every
setting with its description, from which the settings table is generated (scripts/settings_table.py).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from shared.settings.access import AccessSettings, DatabaseSettings, UsageSettings
from shared.settings.base import _Group
from shared.settings.deployment import DeploymentSettings, WyomingSettings
from shared.settings.library import ContinuitySettings, JobsSettings, VoiceSettings
from shared.settings.model import CodecSettings, LLMSettings, ModelSettings, SamplingSettings
from shared.settings.serving import (
    GuardSettings,
    LimitsSettings,
    StreamSettings,
    TextSettings,
    WebSocketSettings,
)

APP_VERSION = "0.1.0"


class Settings(BaseSettings):
    """All configuration, one group per concern. The settings table in the docs is generated from the groups."""

    model_config = SettingsConfigDict(
        env_prefix="TTS_", env_file=None, extra="ignore", protected_namespaces=()
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    codec: CodecSettings = Field(default_factory=CodecSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    text: TextSettings = Field(default_factory=TextSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    websocket: WebSocketSettings = Field(default_factory=WebSocketSettings)
    guards: GuardSettings = Field(default_factory=GuardSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    databases: DatabaseSettings = Field(default_factory=DatabaseSettings)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    voices: VoiceSettings = Field(default_factory=VoiceSettings)
    continuity: ContinuitySettings = Field(default_factory=ContinuitySettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword arguments first, then the flat TTS_<NAME> variables; the stock source would read one variable
        # per group (TTS_LLM as JSON), which is not how this service is configured.
        return init_settings, _FlatEnvironment(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _route_flat_names(cls, data: Any) -> Any:
        """Put each flat name (max_text_chars=5) into its group; a flat name wins over the same name in a group
        given whole, as a keyword argument wins over the environment."""
        if not isinstance(data, Mapping):
            return data
        routed: dict[str, Any] = {}
        flat: dict[str, dict[str, Any]] = {}
        for key, value in data.items():
            if key in GROUPS:
                routed[key] = value
            elif key in FIELD_GROUP:
                flat.setdefault(FIELD_GROUP[key], {})[key] = value
            else:
                raise TypeError(f"Settings() got {key!r}, which is no setting{_did_you_mean(key)}")
        for group, values in flat.items():
            given = routed.get(group, {})
            if isinstance(given, BaseModel):
                given = {name: getattr(given, name) for name in type(given).model_fields}
            routed[group] = {**given, **values}
        return routed

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` applied; it takes flat names (max_text_chars) like the constructor, and does not
        validate them (as pydantic's model_copy). Groups are copied too, so changing the copy leaves this one."""
        grouped: dict[str, dict[str, Any]] = {}
        whole: dict[str, Any] = {}
        for key, value in (update or {}).items():
            if key in GROUPS:
                whole[key] = value
            elif key in FIELD_GROUP:
                grouped.setdefault(FIELD_GROUP[key], {})[key] = value
            else:
                raise TypeError(f"model_copy got {key!r}, which is no setting{_did_you_mean(key)}")
        groups: dict[str, Any] = {}
        for group in GROUPS:
            base = whole.get(group, getattr(self, group))
            groups[group] = base.model_copy(update=grouped.get(group), deep=deep)
        return super().model_copy(update=groups, deep=deep)

    @property
    def resolved_voice_store(self) -> Literal["postgres", "supabase", "file", "none"]:
        if self.voices.voice_store != "auto":
            return self.voices.voice_store
        if self.databases.database_url:
            return "postgres"
        return "supabase" if self.databases.supabase_url and self.databases.supabase_key else "file"


# group name -> its model; flat setting name -> its group; flat setting name -> its field (default, description).
GROUPS: dict[str, type[_Group]] = {name: field.annotation for name, field in Settings.model_fields.items()}  # type: ignore[misc]
FIELD_GROUP: dict[str, str] = {name: group for group, model in GROUPS.items() for name in model.model_fields}
FIELDS: dict[str, FieldInfo] = {name: GROUPS[group].model_fields[name] for name, group in FIELD_GROUP.items()}


class _FlatEnvironment(PydanticBaseSettingsSource):
    """TTS_<NAME> for every setting of every group (case-insensitive, JSON for dict fields), as {group: {name: value}}."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._groups = {
            group: EnvSettingsSource(model, env_prefix="TTS_", case_sensitive=False)  # type: ignore[arg-type]
            for group, model in GROUPS.items()
        }

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads each group whole

    def __call__(self) -> dict[str, Any]:
        return {group: values for group, source in self._groups.items() if (values := source())}


# TTS_ variables the settings do not hold but the project reads elsewhere, so start-up does not report them.
# TTS_MODAL_* belong to the Modal deployment (services/deployment/modal_deployment.py, checked where `modal deploy`
# reads them); TTS_TEST_* to the test suite.
OTHER_PREFIXES = ("TTS_MODAL_", "TTS_TEST_")
OTHER_VARIABLES = frozenset(
    {
        "TTS_WEIGHTS_BASE_URL",
        "TTS_WEIGHTS_MANIFEST",  # core/weights.py
        "TTS_PG_PORT",
        "TTS_PG_USER",
        "TTS_PG_PASSWORD",
        "TTS_PG_DB",  # scripts/start_services
        "TTS_REDIS_PORT",
        "TTS_REDIS_DB",
        "TTS_SERVICES_DIR",
        "TTS_SKIP_VLLM",
        "TTS_SKIP_AGENTS",
        "TTS_TORCH_SPEC",  # scripts/test, scripts/_venv.sh
        "TTS_DOCKERFILE",
        "TTS_MODELS",
        "TTS_MONITORING_BIND",  # deploy/docker/compose.yaml
    }
)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(variable, the setting's variable it most probably meant, or None) for each TTS_ variable in `environ` that
    names no setting and nothing else the project reads."""
    found = []
    for key in sorted(environ):
        name = key.upper()
        if not name.startswith("TTS_") or name[4:].lower() in FIELD_GROUP or name in OTHER_VARIABLES:
            continue
        if name.startswith(OTHER_PREFIXES):
            continue
        close = closest_setting(name[4:].lower())
        found.append((key, f"TTS_{close.upper()}" if close else None))
    return found


def closest_setting(name: str) -> str | None:
    """The setting `name` most probably meant; None when none is close (a removed setting, another tool's)."""
    close = difflib.get_close_matches(name, sorted(FIELD_GROUP), n=1, cutoff=0.75)
    return close[0] if close else None


def _did_you_mean(name: str) -> str:
    close = closest_setting(name)
    return f" (did you mean {close!r}?)" if close else ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
