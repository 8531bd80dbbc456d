"""One console over two cameras on two artefacts (the same fit saved twice), with real processes: each camera card
with its own model's facts; "this part is good" on an alarm of the second model's camera teaches that model only
(its artefact's next version, that part's next score below its threshold; the first model's artefact and verdicts
untouched); a reload that adds a camera reaches the console, which then teaches the second camera's model through
the teaching channel of the stages the reload started for it (teaching changed its artefact, so the reload serves
it anew). One run for all of it: the tests run in order."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_ad.artefact import read_manifest
from tests.integration.conftest import CATEGORY, read_jsonl, wait_for
from tests.integration.console.conftest import TOKEN, ConsoleRun, start_console_run

FPS = 3  # per camera: little load beside two models' stages on two cores


@dataclass
class TwoModels:
    run: ConsoleRun
    model_a: Path
    model_b: Path
    cameras: list[dict[str, Any]]
    folder_a: Path


def _camera(name: str, folder: Path, model: Path) -> dict[str, Any]:
    return {"camera": name, "kind": "folder", "path": str(folder), "fps": FPS, "loop": True, "model": str(model)}


@pytest.fixture(scope="module")
def two_models(fitted_model: Path, one_defect: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[TwoModels]:
    models = tmp_path_factory.mktemp("two-models")
    model_a, model_b = models / "model-a", models / "model-b"  # two artefacts: stages and a teaching channel each
    shutil.copytree(fitted_model, model_a)
    shutil.copytree(fitted_model, model_b)
    # Camera b shows two defective parts: one taught before the reload, the other after it.
    folder_b = tmp_path_factory.mktemp("camera-b")
    defects = sorted((CATEGORY / "test" / "defect").glob("*.png"))
    shutil.copy(defects[0], folder_b / "a_part.png")
    shutil.copy(min((CATEGORY / "test" / "good").glob("*.png")), folder_b / "b_good.png")
    # A part that still alarms once a_part is taught (1.7x the threshold then, by the frame score from the map; the
    # last defect fell to 0.995x: its patches lie near a_part's).
    shutil.copy(CATEGORY / "test" / "defect" / "PA_BDP01_TL_S_D_06_4.png", folder_b / "c_part.png")
    cameras = [_camera("cam-a", one_defect, model_a), _camera("cam-b", folder_b, model_b)]
    run = start_console_run(tmp_path_factory.mktemp("two-models-run"), model_a, None, cameras=cameras)
    yield TwoModels(run, model_a, model_b, cameras, one_defect)
    if run.proc.poll() is None:
        run.stop()


def _alarm(run: ConsoleRun, camera: str, source: str, model: str, after: float = 0.0) -> dict[str, Any]:
    def found(state: dict[str, Any]) -> dict[str, Any] | None:
        return next((a for a in state["alarms"] if a["camera"] == camera and a["source"] == source
                     and a["model"] == model and a["t_capture"] > after), None)

    return found(run.state_when(found, 60, f"an alarm of {camera} on {source} judged by model {model}"))


def _part_verdicts(run: ConsoleRun, camera: str, part: str, since: float) -> list[dict[str, Any]]:
    return [v for v in read_jsonl(run.output_dir / "verdicts.jsonl")
            if v["camera"] == camera and v["path"].endswith(part) and v["t_capture"] > since]


def test_each_camera_card_shows_its_own_model(two_models: TwoModels) -> None:
    state = two_models.run.state_when(lambda s: {c["name"] for c in s["cameras"]} == {"cam-a", "cam-b"}, 120,
                                      "both cameras on the page")
    cams = {c["name"]: c for c in state["cameras"]}
    a, b = state["models"][cams["cam-a"]["model"]], state["models"][cams["cam-b"]["model"]]
    assert a["key"] != b["key"] and set(state["models"]) == {a["key"], b["key"]}
    assert (a["model_dir"], a["cameras"]) == (str(two_models.model_a), ["cam-a"])
    assert (b["model_dir"], b["cameras"]) == (str(two_models.model_b), ["cam-b"])
    assert "model-a" in a["version"] and "model-b" in b["version"]
    for model in (a, b):
        assert model["teachable"] and model["method"] == "patchcore" and model["taught_version"] == 0
        assert model["calibration"]["target_fpr"] == 0.2 and "good_scores" not in model["calibration"]


def test_teaching_an_alarm_of_the_second_camera_teaches_its_model_only(two_models: TwoModels) -> None:
    run = two_models.run
    key_b = run.get("/api/state")["models"]
    key_b = next(key for key, model in key_b.items() if model["cameras"] == ["cam-b"])
    alarm = _alarm(run, "cam-b", "a_part.png", key_b)
    status, reply = run.post(f"/alarms/{alarm['id']}/good", TOKEN)
    assert status == 200 and reply["outcome"] == "taught", reply
    taught = time.time()  # frames captured before this may have scored with the old bank, built beside the new one
    assert (reply["model"], reply["model_dir"], reply["version"]) == (key_b, str(two_models.model_b), 1)
    assert [t["camera"] for t in read_manifest(two_models.model_b).teaching] == ["cam-b"]
    assert read_manifest(two_models.model_a).teaching == []
    after = wait_for(lambda: _part_verdicts(run, "cam-b", "a_part.png", taught), 30, "the part's next verdict")
    assert all(v["verdict"] == "ok" and v["score"] < v["threshold"] for v in after), after
    # Camera a shows the same part to model a, which learnt nothing.
    seen_by_a = wait_for(lambda: _part_verdicts(run, "cam-a", "a_part.png", taught), 30, "camera a's next verdict")
    assert all(v["verdict"] == "anomaly" for v in seen_by_a), seen_by_a
    models = run.get("/api/state")["models"]
    assert {m["model_dir"]: m["taught_version"] for m in models.values()} == {
        str(two_models.model_a): 0, str(two_models.model_b): 1}


def test_a_reload_reaches_the_console(two_models: TwoModels) -> None:
    run = two_models.run
    before = run.get("/api/state")["models"]
    key_a = next(key for key, model in before.items() if model["cameras"] == ["cam-a"])
    key_b = next(key for key, model in before.items() if model["cameras"] == ["cam-b"])
    settings = yaml.safe_load(run.pipeline_file.read_text())
    settings["pipeline"]["cameras"] = [*two_models.cameras, _camera("cam-c", two_models.folder_a, two_models.model_a)]
    run.pipeline_file.write_text(yaml.safe_dump(settings))
    reloaded = time.time()
    os.kill(run.proc.pid, signal.SIGHUP)
    # Taught, model b's artefact is another one now: the reload serves it with stages of their own (a new key).
    state = run.state_when(lambda s: "cam-c" in {c["name"] for c in s["cameras"]}
                           and key_b not in s["models"] and len(s["models"]) == 2, 120,
                           "camera c on the page and camera b on model b's new stages")
    cams = {c["name"]: c["model"] for c in state["cameras"]}
    assert cams["cam-a"] == cams["cam-c"] == key_a and cams["cam-b"] not in (key_a, key_b)
    new_b = state["models"][cams["cam-b"]]
    assert new_b["model_dir"] == str(two_models.model_b) and new_b["taught_version"] == 1
    assert state["models"][key_a]["cameras"] == ["cam-a", "cam-c"]
    assert 'stream_ad_console_drift{camera="cam-c"}' in run.metrics()
    assert "console: the run reloaded: cameras added: cam-c" in run.log.read_text()

    # Teaching goes to the new stages' teaching channel.
    alarm = _alarm(run, "cam-b", "c_part.png", cams["cam-b"], after=reloaded)
    status, reply = run.post(f"/alarms/{alarm['id']}/good", TOKEN)
    assert status == 200 and reply["outcome"] == "taught", reply
    assert (reply["model"], reply["version"]) == (cams["cam-b"], 2)
    assert len(read_manifest(two_models.model_b).teaching) == 2 and read_manifest(two_models.model_a).teaching == []
    assert run.stop() == 0
