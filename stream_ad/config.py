"""One typed settings model: defaults < pipeline YAML < STREAM_AD_* environment variables.

The defaults are the embedded demo (PatchCore on ../shared's magnetic_tile), so `Settings()` runs anywhere the
shared folder sits beside the checkout. Unknown or invalid keys fail with the dotted key and the file they came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "STREAM_AD_"
ENV_NESTED = "__"
SHARED_TOKEN = "${shared_dir}"


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message names the key and where it came from."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackboneSettings(Strict):
    name: str = "mobilenet_v2"
    # A torchvision weights enum member (e.g. IMAGENET1K_V1, DEFAULT) looked up in the torch hub cache, or "random"
    # (speed measurements only). Ignored when weights_path is set.
    weights: str = "DEFAULT"
    weights_path: Path | None = Path(f"{SHARED_TOKEN}/weights/mobilenet_v2_imagenet_tflite.pth")
    # Mid-level taps by torchvision node name: MobileNetV2's stride-8 and stride-16 stage outputs.
    layers: list[str] = Field(default_factory=lambda: ["features.6", "features.13"], min_length=1)
    # Input normalisation of these weights. None takes the torchvision weights enum's; a weights file must state it.
    mean: tuple[float, float, float] | None = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] | None = (0.5, 0.5, 0.5)

    @model_validator(mode="after")
    def _normalisation_is_known(self) -> BackboneSettings:
        if (self.mean is None) != (self.std is None):
            raise ValueError("backbone.mean and backbone.std must be given together")
        if self.weights_path is not None and self.mean is None:
            raise ValueError(
                "backbone.weights_path is set, so backbone.mean and backbone.std must be set too: "
                "a weights file does not say how its inputs were normalised"
            )
        return self


class PreprocessSettings(Strict):
    """How a camera frame becomes the backbone's input. See the README for when to pick which mode."""

    # resize: stretch to image_size x image_size. letterbox: keep the aspect ratio, pad to a square.
    # tile: keep native resolution, score overlapping tile_size tiles and stitch their maps.
    mode: Literal["resize", "letterbox", "tile"] = "resize"
    image_size: int = Field(224, ge=32, le=4096)
    tile_size: int = Field(224, ge=32, le=4096)
    tile_overlap: float = Field(0.25, ge=0.0, lt=1.0)
    # Grey level of the letterbox padding (and of tile padding at frame edges).
    pad_value: int = Field(0, ge=0, le=255)


class ScorerSettings(Strict):
    method: str = "patchcore"
    # The method's own settings; validated by the method's settings model (see stream_ad.scorers).
    params: Any = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        from stream_ad.scorers import scorer_class

        scorer_class(method)  # raises ValueError listing the registered methods
        return method

    @model_validator(mode="after")
    def _validate_params(self) -> ScorerSettings:
        from stream_ad.scorers import scorer_class

        params = self.params.model_dump() if isinstance(self.params, BaseModel) else self.params
        if not isinstance(params, dict):
            raise ValueError("scorer.params must be a mapping")
        try:
            parsed = scorer_class(self.method).Params.model_validate(params)
        except ValidationError as exc:
            raise ValueError(_format_errors(exc, f"scorer.params of method {self.method!r}", prefix="params.")) from None
        object.__setattr__(self, "params", parsed)
        return self


class DataSettings(Strict):
    # An MVTec-AD-layout category folder: train/good, test/<type>, ground_truth/<type> (optional).
    root: Path = Path(f"{SHARED_TOKEN}/datasets/magnetic_tile")


class RuntimeSettings(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(16, ge=1, le=1024)
    # Torch intra-op threads; None keeps torch's default (one per core).
    threads: int | None = Field(None, ge=1)
    seed: int = 0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid", validate_assignment=True
    )

    # Where the project's shared data and weights live; "${shared_dir}" in any path setting expands to it.
    shared_dir: Path = Path("../shared")
    data: DataSettings = Field(default_factory=DataSettings)
    backbone: BackboneSettings = Field(default_factory=BackboneSettings)
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    # Where fitted model artefacts and reports go.
    output_dir: Path = Path("runs")

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
        return env_settings, init_settings

    @model_validator(mode="after")
    def _expand_shared_dir(self) -> Settings:
        _expand_paths(self, str(self.shared_dir))
        return self


def _expand_paths(model: BaseModel, shared: str) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _expand_paths(value, shared)
        elif isinstance(value, Path) and SHARED_TOKEN in str(value):
            object.__setattr__(model, name, Path(str(value).replace(SHARED_TOKEN, shared)))


def _check_env_keys(environ: dict[str, str]) -> None:
    """pydantic-settings ignores unknown STREAM_AD_* variables; a typo there must not pass silently."""
    for var in environ:
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        model: type[BaseModel] | None = Settings
        for part in var[len(ENV_PREFIX) :].lower().split(ENV_NESTED):
            fields = model.model_fields if model is not None else {}
            if part not in fields:
                raise ConfigError(f"unknown setting in environment variable {var}: no key {part!r}")
            annotation = fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
            else:
                break  # a leaf, or scorer.params whose keys the method's model checks


def _format_errors(err: ValidationError, origin: str, prefix: str = "") -> str:
    lines = [f"invalid settings ({origin}):"]
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML at `path` (or the embedded defaults), then STREAM_AD_* variables, then overrides."""
    data: dict[str, Any] = {}
    origin = "built-in defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"settings file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of settings at the top level")
        data = loaded or {}
    _check_env_keys(dict(os.environ))
    _deep_update(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        env = sorted(v for v in os.environ if v.startswith(ENV_PREFIX))
        if env:
            origin += " with environment " + ", ".join(env)
        raise ConfigError(_format_errors(exc, origin)) from None
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"invalid settings ({origin}): {exc}") from None


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
