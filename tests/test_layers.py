"""The layering (../shared/DESIGN.md, .importlinter): every import points down, frames and settings are leaves,
sources and sinks import only them, no package has an import cycle. Checked by import-linter itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts on the stream_ad package found under `root`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / ".importlinter"), "--no-cache"], capture_output=True, text=True,
        timeout=300, cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_every_contract_holds() -> None:
    out = lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 kept, 0 broken" in out.stdout


def copy_with_import(tmp_path: Path, module: str, line: str) -> Path:
    shutil.copytree(REPO / "stream_ad", tmp_path / "stream_ad", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "stream_ad" / module
    path.write_text(path.read_text() + f"\n{line}\n")
    return tmp_path


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    out = lint(copy_with_import(tmp_path, "model.py", "import stream_ad.pipeline.ledger  # noqa"))
    assert out.returncode == 1
    assert "Every import points down" in out.stdout and "BROKEN" in out.stdout
    assert "stream_ad.model -> stream_ad.pipeline.ledger" in out.stdout


def test_settings_importing_torch_breaks_the_leaf_contract(tmp_path: Path) -> None:
    out = lint(copy_with_import(tmp_path, "settings/sections.py", "import torch  # noqa"))
    assert out.returncode == 1
    assert "stream_ad.settings.sections -> torch" in out.stdout


def test_the_line_runtime_importing_torch_breaks_its_contract(tmp_path: Path) -> None:
    out = lint(copy_with_import(tmp_path, "line/model.py", "import stream_ad.model  # noqa"))
    assert out.returncode == 1
    assert "never imports torch" in out.stdout and "stream_ad.line.model -> stream_ad.model" in out.stdout


def test_a_cycle_inside_a_package_is_found(tmp_path: Path) -> None:
    out = lint(copy_with_import(tmp_path, "data/device_preprocess.py", "import stream_ad.data.preprocess  # noqa"))
    assert out.returncode == 1
    assert "No import cycles" in out.stdout and "BROKEN" in out.stdout
