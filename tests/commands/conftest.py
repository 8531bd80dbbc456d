"""A model fitted with `stream-ad fit --good` on a plain folder of PA_BDP01_TL's good images (some in a subfolder),
as the command tests share it: run through stream_ad.cli.main, as a user runs the CLI."""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PIPED

CATEGORY = PIPED / "PA_BDP01_TL"
GOOD_IMAGES = 24  # half held out: 12 calibrate a 25 % target at 95 % (11 needed)


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one line a user error prints (exit 2, no traceback); fails the test otherwise."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("stream-ad: ")]
        assert self.code == 2 and len(lines) == 1 and "Traceback" not in self.stderr, self.stderr
        return lines[0]


def cli(*args: str | Path) -> CliRun:
    """`stream-ad ARGS` in this process (the same main() as the console script), its output captured."""
    from stream_ad.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliRun(code, out.getvalue(), err.getvalue())


def copy_images(paths: list[Path], dst: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, dst)) for p in paths]


@dataclass(frozen=True)
class FolderFit:
    work: Path
    config: Path  # -c FILE: small, fast settings
    good: Path  # the folder fitted from
    model: Path  # the artefact, uncalibrated
    fit: CliRun


@pytest.fixture(scope="session")
def folder_fit(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> FolderFit:
    work = tmp_path_factory.mktemp("plain")
    train = sorted((CATEGORY / "train" / "good").iterdir())[:GOOD_IMAGES]
    good = work / "pictures"
    copy_images(train[: GOOD_IMAGES // 2], good)
    copy_images(train[GOOD_IMAGES // 2 :], good / "second_shift")  # searched recursively
    config = work / "settings.yaml"
    config.write_text(
        f"output_dir: {work / 'runs'}\n"
        "preprocess: {image_size: 128}\n"
        "scorer: {params: {coreset_ratio: 0.1}}\n"
        "runtime: {device: cpu, threads: 2, batch_size: 8, accelerate: eager}\n"
        "calibration: {holdout_fraction: 0.5, target_fpr: 0.25}\n"
    )
    fit = cli("-c", config, "fit", "--good", good)
    assert fit.code == 0, fit.stderr
    return FolderFit(work, config, good, work / "runs" / "pictures-patchcore", fit)


@pytest.fixture(scope="session")
def calibrated_fit(folder_fit: FolderFit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the folder fit's artefact, calibrated on its own hold-out."""
    model = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(folder_fit.model, model)
    run = cli("-c", folder_fit.config, "calibrate", "--model", model)
    assert run.code == 0, run.stderr
    return model
