"""The console command as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PIPED

CATEGORY = PIPED / "PA_GLA01_TL"


def run(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_ad.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_the_subcommands() -> None:
    out = run("--help")
    assert out.returncode == 0
    for sub in ("fit", "eval", "demo", "bench"):
        assert sub in out.stdout


def test_fit_then_eval_from_a_pipeline_file(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text(f"data:\n  root: {CATEGORY}\noutput_dir: {tmp_path}\nscorer:\n  params:\n    coreset_ratio: 0.05\n")
    fit = run("-c", str(config), "fit")
    assert fit.returncode == 0, fit.stderr
    model = tmp_path / "PA_GLA01_TL-patchcore"
    assert (model / "manifest.json").is_file()
    report = tmp_path / "report.json"
    ev = run("-c", str(config), "eval", "--model", str(model), "--json", str(report))
    assert ev.returncode == 0, ev.stderr
    assert "image AUROC" in ev.stdout and "overall" in ev.stdout
    metrics = json.loads(report.read_text())["metrics"]["overall"]
    assert metrics["image_auroc"] >= 0.95 and metrics["pixel_auroc"] >= 0.85 and metrics["pro"] >= 0.5


def test_bad_settings_exit_2_naming_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("runtime:\n  batch_sise: 3\n")
    out = run("-c", str(config), "fit")
    assert out.returncode == 2
    assert "runtime.batch_sise: unknown key" in out.stderr and str(config) in out.stderr


def test_missing_data_exits_2_naming_the_folder(tmp_path: Path) -> None:
    out = run("fit", env={"STREAM_AD_DATA__ROOT": str(tmp_path / "absent")})
    assert out.returncode == 2
    assert str(tmp_path / "absent") in out.stderr and "Traceback" not in out.stderr
