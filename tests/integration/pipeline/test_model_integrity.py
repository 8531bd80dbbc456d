"""A model that scores NaN or infinite, in a running pipeline: every such frame is a counted bad_score drop, no
verdict; and a threshold that cannot decide stops `stream-ad run` before anything starts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_ad.artefact import load_model, save_model
from stream_ad.data import MVTecCategory
from stream_ad.model import AnomalyModel
from stream_ad.settings import load_settings
from tests.conftest import FaultFigures
from tests.integration.conftest import CATEGORY, cli, read_jsonl, write_pipeline

FRAMES = 6


@pytest.fixture(scope="module")
def overflowing_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PatchCore whose memory bank is finite (so the artefact's NaN check passes it) but so large that every
    distance overflows float32: it scores every frame -inf, as a real model with a broken bank would."""
    model = AnomalyModel(load_settings(data={"root": str(CATEGORY)}, preprocess={"image_size": 64},
                                       scorer={"params": {"coreset_ratio": 0.1}}, runtime={"accelerate": "eager"}))
    model.fit([s.path for s in MVTecCategory(CATEGORY).train()[:8]])
    bank = model.scorer.state_tensors()["memory_bank"]
    model.scorer.load_state_tensors({"memory_bank": bank * 1e20})
    folder = save_model(model, tmp_path_factory.mktemp("overflowing") / "model")
    assert load_model(folder).scorer.state_tensors()["memory_bank"].isfinite().all()
    return folder


def test_nan_or_infinite_scores_are_counted_as_bad_score(overflowing_model: Path, tmp_path: Path,
                                                        fault_figures: Callable[[FaultFigures], None]) -> None:
    cfg = write_pipeline(tmp_path / "line.yaml", overflowing_model, tmp_path, metrics={"enabled": False},
                         source={"fps": 20, "max_frames": FRAMES}, decide={"threshold": 1.0})
    out = cli("run", str(cfg), "--summary", str(tmp_path / "summary.json"), timeout=300,
              env={"STREAM_AD_RUNTIME__ACCELERATE": "eager"})
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    fault_figures(FaultFigures("model scores -inf (broken memory bank)", f"{FRAMES} frames",
                               f"dropped {summary['dropped']}, {summary['scored']} verdicts", summary["unaccounted"]))
    assert summary["frames_in"] == FRAMES and summary["scored"] == 0
    assert summary["dropped"] == {"bad_score": FRAMES} and summary["unaccounted"] == 0
    assert "NaN or infinite" in out.stderr
    assert not any(v.get("verdict") for v in read_jsonl(tmp_path / "verdicts.jsonl"))


def test_a_threshold_that_cannot_decide_stops_the_run(overflowing_model: Path, tmp_path: Path) -> None:
    cfg = write_pipeline(tmp_path / "line.yaml", overflowing_model, tmp_path, metrics={"enabled": False},
                         decide={"threshold": -5})
    out = cli("run", str(cfg), timeout=120)
    assert out.returncode == 2
    assert "the decision threshold -5 (setting pipeline.decide.threshold) is negative" in out.stderr
    assert "Traceback" not in out.stderr
