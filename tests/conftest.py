"""Shared fixtures: the real data sets and weights in ../shared (STREAM_AD_SHARED_DIR overrides)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAM_AD_SHARED_DIR", REPO.parent / "shared")).resolve()
WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_tflite.pth"
PIPED = SHARED / "datasets" / "piped"
MAGNETIC_TILE = SHARED / "datasets" / "magnetic_tile"


@dataclass(frozen=True)
class FaultFigures:
    """What a fault test did to a running pipeline and what the pipeline made of it: one row of the fault table that
    `scripts/fault_table.py` prints from a `pytest --junitxml` report."""

    fault: str
    sent: str  # what the test did or injected
    counted: str  # how the pipeline accounted for it (drop reasons, counters)
    lost: int  # frames gone without a reason (the ledger's unaccounted): the goal is 0
    recover_s: float | None = None  # from the end of the fault to the first verdict after it; None: not applicable


@pytest.fixture
def fault_figures(record_property: Callable[[str, object], None]) -> Callable[[FaultFigures], None]:
    def record(figures: FaultFigures) -> None:
        record_property("fault_figures", json.dumps(asdict(figures)))

    return record


@pytest.fixture(scope="session")
def shared() -> Path:
    if not WEIGHTS.is_file():
        pytest.fail(f"the shared data folder is missing: {SHARED} (set STREAM_AD_SHARED_DIR)")
    return SHARED


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set their own STREAM_AD_* variables; none leak in from the caller's shell, except the shared dir."""
    for var in list(os.environ):
        if var.startswith("STREAM_AD_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("STREAM_AD_SHARED_DIR", str(SHARED))


@pytest.fixture(scope="session")
def piped_patchcore(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> tuple[Any, Path]:
    """PatchCore fitted on one PIPED category (coreset ratio 0.1) and its saved artefact: (AnomalyModel, folder)."""
    from stream_ad.artefact import save_model
    from stream_ad.data import MVTecCategory
    from stream_ad.model import AnomalyModel
    from stream_ad.settings import load_settings

    root = PIPED / "PA_BDP01_TL"
    model = AnomalyModel(load_settings(data={"root": str(root)}, scorer={"params": {"coreset_ratio": 0.1}}))
    model.fit([s.path for s in MVTecCategory(root).train()])
    return model, save_model(model, tmp_path_factory.mktemp("artefact") / "piped")


@pytest.fixture
def artefact_copy(piped_patchcore: tuple[Any, Path], tmp_path: Path) -> Path:
    """A copy of the shared PIPED artefact, for a test that changes it (teaching)."""
    import shutil

    return Path(shutil.copytree(piped_patchcore[1], tmp_path / "model"))
