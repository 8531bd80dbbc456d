"""The console command as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stream_ad.cli import build_parser
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
    for sub in ("fit", "eval", "demo", "bench", "keys"):
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


def test_a_relative_path_that_is_missing_is_shown_where_it_was_looked_for(tmp_path: Path) -> None:
    # The default shared_dir (../shared) is read from the working directory: run elsewhere, it looks elsewhere.
    good = tmp_path / "good"
    good.mkdir()
    for name in ("a.png", "b.png"):
        (good / name).write_bytes(next((CATEGORY / "train" / "good").iterdir()).read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "STREAM_AD_SHARED_DIR"}
    out = subprocess.run([sys.executable, "-m", "stream_ad.cli", "fit", "--good", "good"], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    looked = tmp_path / "../shared/weights/mobilenet_v2_imagenet_tflite.pth"
    assert f"that is {looked}: relative to the working directory" in out.stderr, out.stderr
    assert "backbone.weights_path" in out.stderr and "Traceback" not in out.stderr


def test_global_options_before_or_after_the_subcommand() -> None:
    parse = build_parser().parse_args
    for argv in (["-c", "a.yaml", "-v", "fit"], ["fit", "-c", "a.yaml", "-v"], ["-v", "fit", "--config", "a.yaml"],
                 ["-c", "a.yaml", "config", "show", "-v"], ["config", "show", "-c", "a.yaml", "-v"]):
        args = parse(argv)
        assert (args.config, args.verbose) == (Path("a.yaml"), True), argv
    args = parse(["fit", "--out", "m"])
    assert (args.config, args.verbose) == (None, False)


def test_faiss_loader_lines_show_with_verbose_only(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text("runtime:\n  batch_size: 4\n")
    quiet = run("config", "show", "-c", str(config))
    assert quiet.returncode == 0, quiet.stderr
    assert f"batch_size: 4  # {config}" in quiet.stdout
    assert "faiss" not in quiet.stderr and "ModuleNotFoundError" not in quiet.stderr
    verbose = run("config", "show", "-c", str(config), "-v")
    assert "faiss.loader" in verbose.stderr  # what faiss tried, for whoever debugs a slow kNN


def test_check_exits_2_on_a_pipeline_without_its_model(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text(f"data:\n  root: {CATEGORY}\noutput_dir: {tmp_path}\npipeline:\n  metrics: {{port: 0}}\n")
    out = run("check", str(config))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "FAIL model: not a stream_ad model artefact" in out.stdout and "ok   source: folder" in out.stdout
