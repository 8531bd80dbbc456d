"""The settings a fitted model is served with: what it computes from the settings it was fitted with, how it runs
from the line's; a model setting the line's name explicitly with another value is a conflict, named.

Shared by both kinds of artefact (stream_ad.artefact, stream_ad.line.artefact), which differ only in where a method's
params, defaults filled in, come from (the scorer registry; an exported manifest's record of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any

from stream_ad.settings.load import Settings

# How a machine runs a model, never what it computes: taken whole from the settings an artefact is loaded with.
RUNNING = ("shared_dir", "output_dir", "runtime", "pipeline")
# Where this machine finds the backbone's weights: the loading settings' where they name it (checked by sha256).
WEIGHTS = frozenset({"weights", "weights_path"})


def named(section: Any, keys: frozenset[str] | None = None) -> dict[str, Any]:
    """The keys of a settings section given explicitly (YAML or environment), with their values."""
    return {k: getattr(section, k) for k in section.model_fields_set if keys is None or k in keys}


def difference(key: str, artefact: Any, given: Any) -> str:
    return f"{key}: the artefact's {artefact!r}, given {given!r}"


def model_values(settings: Settings, params: Mapping[str, Any], *, explicit_only: bool) -> dict[str, Any]:
    """What a model computes from, by dotted key as JSON values: backbone name, taps and normalisation,
    preprocessing, method and `params` (the method's, as it reads them). explicit_only: only the keys the settings
    name (defaults never count)."""
    out: dict[str, Any] = {}
    for name in ("backbone", "preprocess"):
        section = getattr(settings, name)
        values = section.model_dump(mode="json", exclude=WEIGHTS)
        keys = section.model_fields_set if explicit_only else values
        out.update({f"{name}.{key}": values[key] for key in keys if key in values})
    if not explicit_only or "method" in settings.scorer.model_fields_set:
        out["scorer.method"] = settings.scorer.method
    keys = settings.scorer.params if explicit_only else params
    out.update({f"scorer.params.{key}": params.get(key) for key in keys})
    return out


def conflicts(fitted: Settings, given: Settings, fitted_params: Mapping[str, Any], given_params: Mapping[str, Any],
              free: Set[str]) -> list[str]:
    """The model settings `given` names explicitly with other values than `fitted`'s, the params named in `free`
    (the method's not_scoring: training only) aside."""
    method = fitted.scorer.method
    if "method" in given.scorer.model_fields_set and given.scorer.method != method:
        return [difference("scorer.method", method, given.scorer.method)]
    have = model_values(fitted, fitted_params, explicit_only=False)
    want = model_values(given, given_params, explicit_only=True)
    return [difference(key, have.get(key), value) for key, value in want.items()
            if key.removeprefix("scorer.params.") not in free and value != have.get(key)]


def served(fitted: Settings, given: Settings) -> Settings:
    """`fitted` run as `given` says: runtime, pipeline and output folders from `given`, and data.root, calibration
    and the weights' location where `given` names them."""
    return fitted.model_copy(update={
        **{name: getattr(given, name) for name in RUNNING},
        "backbone": fitted.backbone.model_copy(update=named(given.backbone, WEIGHTS)),
        "data": fitted.data.model_copy(update=named(given.data)),
        "calibration": fitted.calibration.model_copy(update=named(given.calibration)),
    })


def model_dir_name(settings: Settings, category: str | None = None) -> str:
    """An artefact folder's name: CATEGORY-METHOD (the category: data.root's name unless given)."""
    return f"{category or settings.data.root.name}-{settings.scorer.method}"


def default_model_dir(settings: Settings, category: str | None = None) -> Path:
    """Where `stream-ad fit` puts the artefact for these settings: OUTPUT_DIR/CATEGORY-METHOD."""
    return settings.output_dir / model_dir_name(settings, category)


def serving_model_dir(settings: Settings) -> Path:
    """The artefact a pipeline serves: pipeline.model, else what `stream-ad fit` wrote for these settings."""
    return settings.pipeline.model or default_model_dir(settings)
