"""What a reload may change (the cameras and their models) and what it changes, from the settings before and after."""

from __future__ import annotations

from pathlib import Path

from stream_ad.frames import ModelInfo
from stream_ad.pipeline.plan import ModelSpec
from stream_ad.pipeline.reload import camera_changes, fixed_differences
from stream_ad.pipeline.served import ServedCameras, ServedModel
from stream_ad.settings import Settings, load_settings


def _settings(*cameras: dict[str, object], **pipeline: object) -> Settings:
    return load_settings(pipeline={"cameras": list(cameras), **pipeline})


def _served(settings: Settings, **camera_models: str) -> ServedCameras:
    models = tuple(ServedModel(ModelSpec(key, Path(f"/m/{key}"), 1.0, ModelInfo(key), settings), Path(f"/m/{key}"),
                               key, "given", None) for key in dict.fromkeys(camera_models.values()))
    return ServedCameras(models, camera_models)


def test_only_the_cameras_and_the_model_may_change_and_the_rest_is_named() -> None:
    old = _settings({"camera": "a"}, policy="drop_oldest")
    assert fixed_differences(old, _settings({"camera": "a"}, {"camera": "b", "fps": 2}, model="/m/x")) == []
    new = _settings({"camera": "a"}, policy="drop_newest", infer={"max_batch": 4})
    assert fixed_differences(old, new) == ["pipeline.infer.max_batch", "pipeline.policy"]


def test_added_removed_and_changed_cameras_and_the_models_they_start_and_retire() -> None:
    old = _settings({"camera": "a"}, {"camera": "b"}, {"camera": "c", "fps": 5})
    new = _settings({"camera": "a"}, {"camera": "c", "fps": 2}, {"camera": "d"}, {"camera": "e"})
    changes = camera_changes(old, _served(old, a="m0", b="m1", c="m0"),
                             new, _served(new, a="m0", c="m0", d="m2", e="m0"))
    assert (changes.added, changes.removed, changes.restarted) == (("d", "e"), ("b",), ("c",))
    assert (changes.new_models, changes.retired_models) == (("m2",), ("m1",))
    assert changes.describe() == ("cameras added: d, e; removed: b; restarted: c; models started: m2; "
                                  "models stopped: m1")


def test_a_camera_moved_to_another_model_is_restarted_and_an_unchanged_file_changes_nothing() -> None:
    settings = _settings({"camera": "a"}, {"camera": "b"})
    moved = camera_changes(settings, _served(settings, a="m0", b="m0"), settings, _served(settings, a="m0", b="m1"))
    assert moved.restarted == ("b",) and moved.new_models == ("m1",) and not moved.retired_models
    same = camera_changes(settings, _served(settings, a="m0", b="m0"), settings, _served(settings, a="m0", b="m0"))
    assert same.none and same.describe() == "nothing changed"
