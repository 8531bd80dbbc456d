"""The root settings model and how it loads: built-in defaults (the demo) < the YAML given < STREAM_AD_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from stream_ad.settings.errors import ConfigError, format_errors
from stream_ad.settings.pipeline import PipelineSettings
from stream_ad.settings.sections import (
    SHARED_TOKEN,
    BackboneSettings,
    CalibrationSettings,
    DataSettings,
    PreprocessSettings,
    RuntimeSettings,
    ScorerSettings,
)

ENV_PREFIX = "STREAM_AD_"
ENV_NESTED = "__"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid", validate_assignment=True,
        # A variable set to "null" gives None, as `null` in YAML does (STREAM_AD_PREPROCESS__MAP_SCORE_FRACTION=null:
        # the method's own frame score); anywhere None is not allowed it is an error naming the key.
        env_parse_none_str="null",
    )
    # False where settings are read back from a record (settings_from_record): only what it holds.
    from_environment: ClassVar[bool] = True

    # Where the project's shared data and weights live; "${shared_dir}" in any path setting expands to it.
    shared_dir: Path = Path("../shared")
    data: DataSettings = Field(default_factory=DataSettings)
    backbone: BackboneSettings = Field(default_factory=BackboneSettings)
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    # Where fitted model artefacts and reports go.
    output_dir: Path = Path("runs")
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML arrives as init kwargs; the environment overrides it, as an operator expects.
        return (env_settings, init_settings) if cls.from_environment else (init_settings,)

    @property
    def checkpoint_folder(self) -> Path:
        return self.runtime.checkpoint_dir or self.output_dir / "checkpoints"

    @property
    def cache_folder(self) -> Path:
        return self.runtime.cache_dir or self.output_dir / "cache"

    def written_paths(self) -> dict[str, Path]:
        """Every file or folder these settings have stream_ad write, by the settings key that places it (defaults
        resolved): what a service's sandbox must allow and `stream-ad check` tests."""
        paths = {"output_dir": self.output_dir, "runtime.checkpoint_dir": self.checkpoint_folder,
                 "runtime.cache_dir": self.cache_folder}
        for i, out in enumerate(self.pipeline.sink.outputs):
            paths.update({f"pipeline.sink.outputs.{i}.{key}": path
                          for key, path in out.written_paths(self.output_dir).items()})
        return paths

    @model_validator(mode="after")
    def _expand_shared_dir(self) -> Settings:
        _expand_paths(self, str(self.shared_dir))
        return self


class _Recorded(Settings):
    """Settings as a record holds them: its values only, no environment variable applied on top."""

    from_environment = False


# Keys a record written before they existed lacks, each with what such a record computed by (not today's default):
# without preprocess.map_score_fraction, frames were scored by the method's own image score.
_BEFORE_THE_KEY: dict[tuple[str, str], Any] = {("preprocess", "map_score_fraction"): None}


def settings_from_record(data: dict[str, Any]) -> Settings:
    """Settings recorded earlier (a model artefact's fit settings), validated as they were written: unlike
    Settings.model_validate, which applies this process's STREAM_AD_* variables on top. A whole record (one with
    the section) that lacks a key added since holds what it computed then (_BEFORE_THE_KEY). Raises
    ValidationError."""
    filled = dict(data)
    for (section, key), value in _BEFORE_THE_KEY.items():
        if isinstance(filled.get(section), dict) and key not in filled[section]:
            filled[section] = {**filled[section], key: value}
    return _Recorded.model_validate(filled)


def _expand_paths(model: BaseModel, shared: str) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _expand_paths(value, shared)
        elif isinstance(value, Path) and SHARED_TOKEN in str(value):
            object.__setattr__(model, name, Path(str(value).replace(SHARED_TOKEN, shared)))


def env_keys(environ: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Each STREAM_AD_* variable -> the key path it sets (STREAM_AD_SCORER__PARAMS__K -> scorer, params, k).

    pydantic-settings ignores unknown STREAM_AD_* variables; a typo there must not pass silently, so an unknown key
    is a ConfigError naming the variable."""
    keys = {}
    for var in environ:
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        parts = tuple(var[len(ENV_PREFIX) :].lower().split(ENV_NESTED))
        model: type[BaseModel] | None = Settings
        for part in parts:
            fields = model.model_fields if model is not None else {}
            if part not in fields:
                raise ConfigError(f"unknown setting in environment variable {var}: no key {part!r}")
            annotation = fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
            else:
                break  # a leaf, or scorer.params whose keys the method's model checks
        keys[var] = parts
    return keys


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The settings mapping a YAML file holds (empty for an empty file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"settings file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of settings at the top level")
    return loaded or {}


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML at `path` (or the embedded defaults), then STREAM_AD_* variables, then overrides."""
    data = {} if path is None else read_settings_file(path)
    origin = "built-in defaults" if path is None else str(path)
    env_keys(os.environ)
    _deep_update(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        env = sorted(v for v in os.environ if v.startswith(ENV_PREFIX))
        if env:
            origin += " with environment " + ", ".join(env)
        raise ConfigError(format_errors(exc, origin)) from None
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"invalid settings ({origin}): {exc}") from None


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
