"""A reload (SIGHUP, `systemctl reload`): what it may change and what it changes, worked out from the settings before
and after. Pure: the run (stream_ad.pipeline.run) applies it.

Only the cameras may change while the line runs: pipeline.cameras (cameras added, removed, a camera's source section
or model changed) and pipeline.model (the artefact of the cameras that name none). Any other difference refuses the
whole reload, naming the keys: they need a restart. A camera whose section or model changed is restarted (its source
stops, drains and starts again with the new section); a new or changed artefact gets model stages of its own, started
before its cameras; an artefact no camera names any more has its stages stopped once its frames are through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream_ad.pipeline.served import ServedCameras
from stream_ad.settings import Settings

RELOADABLE = ("cameras", "model")  # keys of pipeline a reload may change


def fixed_differences(old: Settings, new: Settings) -> list[str]:
    """The settings keys, outside what a reload may change, whose values differ (dotted, sorted)."""
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    for dump in (before, after):
        for key in RELOADABLE:
            dump["pipeline"].pop(key)
    return sorted(_differences(before, after, ""))


def _differences(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(a.keys() | b.keys())
                for d in _differences(a.get(key), b.get(key), f"{where}.{key}" if where else key)]
    return [] if a == b else [where]


@dataclass(frozen=True)
class CameraChanges:
    added: tuple[str, ...]  # cameras to start
    removed: tuple[str, ...]  # cameras to stop
    restarted: tuple[str, ...]  # cameras whose section or model changed: stopped, then started anew
    new_models: tuple[str, ...]  # model keys whose stages start
    retired_models: tuple[str, ...]  # model keys no camera names any more: their stages stop

    @property
    def none(self) -> bool:
        return not (self.added or self.removed or self.restarted or self.new_models or self.retired_models)

    def describe(self) -> str:
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("cameras added:", self.added), ("removed:", self.removed), ("restarted:", self.restarted),
            ("models started:", self.new_models), ("models stopped:", self.retired_models)) if names]
        return "; ".join(parts) or "nothing changed"


def camera_changes(old: Settings, old_served: ServedCameras, new: Settings, new_served: ServedCameras
                   ) -> CameraChanges:
    before = {cam.camera: cam for _, cam in old.pipeline.camera_sections()}
    after = {cam.camera: cam for _, cam in new.pipeline.camera_sections()}
    keys_before = {m.spec.key for m in old_served.models}
    keys_after = {m.spec.key for m in new_served.models}
    return CameraChanges(
        added=tuple(c for c in after if c not in before),
        removed=tuple(c for c in before if c not in after),
        restarted=tuple(c for c in after if c in before and (
            after[c] != before[c] or new_served.camera_models[c] != old_served.camera_models[c])),
        new_models=tuple(m.spec.key for m in new_served.models if m.spec.key not in keys_before),
        retired_models=tuple(m.spec.key for m in old_served.models if m.spec.key not in keys_after),
    )
