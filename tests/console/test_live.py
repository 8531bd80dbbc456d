"""The console's live view over cameras of two models: each camera with its model, the models' facts by key, alarms
taught only through the model that judged them, a reload's lineup (cameras removed, moved, added)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from stream_ad.calibration.shift import GoodScores
from stream_ad.console.lineup import ConsoleCamera, ConsoleModel, Lineup, ModelFacts
from stream_ad.console.live import LiveView
from stream_ad.frames import MODEL_KEY, Frame, ModelInfo
from stream_ad.pipeline.plan import ModelSpec
from stream_ad.settings import ConsoleSettings, Settings


def _model(key: str, threshold: float, good: bool = False) -> ConsoleModel:
    info = ModelInfo(f"model-{key} patchcore state sha256:{key}")
    spec = ModelSpec(key, Path(f"/models/{key}"), threshold, info, Settings())
    facts = ModelFacts(key, str(spec.model_dir), info.version, "patchcore", True, threshold, None, None, 0, 0)
    scores = GoodScores(tuple(np.linspace(0, threshold, 20).tolist()), 20) if good else None
    return ConsoleModel(spec, facts, f"ipc:///run/infer-control-{key}.sock", scores)


def _frame(camera: str, model: ConsoleModel, frame_id: int, score: float) -> Frame:
    t = time.time()
    return Frame(frame_id, camera, t, score=score, threshold=model.spec.threshold,
                 verdict="anomaly" if score > model.spec.threshold else "ok",
                 meta={MODEL_KEY: asdict(model.spec.info)}, t_sent=t)


M0, M1, M2 = _model("m0", 1.0, good=True), _model("m1", 5.0), _model("m2", 3.0, good=True)


def test_each_camera_shows_its_own_model_and_a_reload_changes_the_lineup() -> None:
    live = LiveView(ConsoleSettings(), Lineup((M0, M1), (ConsoleCamera("a", "m0", 5.0), ConsoleCamera("b", "m1", 5.0))))
    live.add(_frame("a", M0, 1, 0.5))
    live.add(_frame("b", M1, 1, 6.0))
    state = live.snapshot()
    cams = {c["name"]: c for c in state["cameras"]}
    assert (cams["a"]["model"], cams["b"]["model"]) == ("m0", "m1")
    assert cams["a"]["drift"] is not None and cams["b"]["drift"] is None  # m1 keeps no calibration scores
    assert {k: (m["threshold"], m["cameras"]) for k, m in state["models"].items()} == {
        "m0": (1.0, ["a"]), "m1": (5.0, ["b"])}
    alarm = live.alarms[0]
    assert (alarm.model, state["alarms"][0]["model"]) == ("m1", "m1")
    assert live.lineup.judged(alarm.frame) is M1

    # Reload: b moves to m2 (m1 retired), a is removed, c added.
    live.set_lineup(Lineup((M0, M2), (ConsoleCamera("b", "m2", 5.0), ConsoleCamera("c", "m0", 5.0))))
    assert live.lineup.judged(alarm.frame) is None  # judged by m1, which no longer serves b: nothing to teach
    live.add(_frame("a", M0, 2, 0.5))  # a removed camera's last frame in flight: not shown
    live.add(_frame("c", M0, 1, 0.5))
    live.add(_frame("b", M2, 2, 0.5))
    cams = {c["name"]: c for c in live.snapshot()["cameras"]}
    assert set(cams) == {"b", "c"} and (cams["b"]["model"], cams["c"]["model"]) == ("m2", "m0")
    assert cams["b"]["drift"]["n"] == 1  # a watch of its own against m2's calibration, started over
    assert live.lineup.judged(_frame("b", M2, 3, 4.0)) is M2
