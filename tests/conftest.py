"""Shared fixtures: the real data sets and weights in ../shared (STREAM_AD_SHARED_DIR overrides)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAM_AD_SHARED_DIR", REPO.parent / "shared")).resolve()
WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_tflite.pth"
PIPED = SHARED / "datasets" / "piped"
MAGNETIC_TILE = SHARED / "datasets" / "magnetic_tile"


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
