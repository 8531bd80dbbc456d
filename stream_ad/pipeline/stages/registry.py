"""Stage names -> Stage classes. The built-in names are stream_ad.settings.pipeline.BUILTIN_STAGES (checked there as
the settings load); a custom middle stage is named in pipeline.stages by its class's import path,
"package.module:Class" (it gets default queue settings). The source is no Stage: the shell reads its camera
(stages/source.py). Modules are imported only when their stage is built, so a stage process loads only its own."""

from __future__ import annotations

import importlib

from stream_ad.pipeline.stages.base import Stage

BUILTIN_CLASSES: dict[str, str] = {
    "preprocess": "stream_ad.pipeline.stages.preprocess:Preprocess",
    "infer": "stream_ad.pipeline.stages.infer:Infer",
    "decide": "stream_ad.pipeline.stages.decide:Decide",
    "sink": "stream_ad.pipeline.stages.sink:SinkStage",
}


def stage_class(name: str) -> type[Stage]:
    """The Stage class a name in pipeline.stages stands for; ValueError naming what cannot be imported, TypeError
    naming what is no Stage."""
    target = BUILTIN_CLASSES.get(name, name)
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"stage {name!r}: cannot import {target}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise TypeError(f"stage {name!r}: {target} is not a Stage class (stream_ad.pipeline.stages.base.Stage)")
    return cls
