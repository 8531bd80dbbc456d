"""Stage names a pipeline YAML may list, and the factories behind them.

A stage is a function from a batch of frames to frames (`stream_ad.pipeline.stages`); its factory builds it once per
process from the settings. The built-in chain is source -> preprocess -> infer -> decide -> sink. A custom middle stage
is named in `pipeline.stages` by its factory's import path, "package.module:factory" (it gets default queue
settings); this module stays free of heavy imports because the settings validator reads it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

BUILTIN_STAGES: dict[str, str] = {
    "source": "stream_ad.pipeline.stages:make_source",
    "preprocess": "stream_ad.pipeline.stages:make_preprocess",
    "infer": "stream_ad.pipeline.stages:make_infer",
    "decide": "stream_ad.pipeline.stages:make_decide",
    "sink": "stream_ad.pipeline.stages:make_sink",
}


def check_stage_names(stages: list[str]) -> None:
    if len(stages) < 2 or stages[0] != "source" or stages[-1] != "sink":
        raise ValueError(f"pipeline.stages must start with 'source' and end with 'sink', got {stages}")
    if len(set(stages)) != len(stages):
        raise ValueError(f"pipeline.stages names a stage twice: {stages}")
    for name in stages:
        if name not in BUILTIN_STAGES and ":" not in name:
            raise ValueError(
                f"unknown stage {name!r} in pipeline.stages; known: {', '.join(BUILTIN_STAGES)}, "
                "or a custom stage factory as 'package.module:function'"
            )
    if "infer" in stages and "decide" in stages and stages.index("decide") < stages.index("infer"):
        raise ValueError("pipeline.stages: 'decide' needs the scores of 'infer' and must come after it")


def stage_factory(name: str) -> Callable[..., Any]:
    target = BUILTIN_STAGES.get(name, name)
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"stage {name!r}: cannot import {target}: {exc}") from None


def stage_label(name: str) -> str:
    """A short metric/log label: the factory's name for a custom stage."""
    return name.rpartition(":")[2] if ":" in name else name
