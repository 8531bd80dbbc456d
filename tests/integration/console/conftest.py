"""Fixtures of the console tests: a calibrated PatchCore artefact to teach (a fresh copy per module), an operators
file, and `stream-ad run` with the console on, over a folder camera on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    CATEGORY,
    cli,
    free_port,
    start_cli,
    wait_for,
    write_pipeline,
)
from tests.workers import once_per_run

TOKEN = "anna-0123456789abcdef"
CALIBRATION_FPR = 0.2


@pytest.fixture(scope="session")
def fitted_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PatchCore fitted on the PIPED category's training images (a quarter held out), calibrated on its 16 good test
    images for a false-alarm rate of 0.2; fitted once for all workers."""
    with once_per_run(tmp_path_factory, "console-fit") as (work, make):
        folder = work / "model"
        if make:
            env = {"STREAM_AD_DATA__ROOT": str(CATEGORY), "STREAM_AD_SCORER__PARAMS__CORESET_RATIO": "0.05",
                   "STREAM_AD_PREPROCESS__IMAGE_SIZE": "128", "STREAM_AD_CALIBRATION__DEFECTS": "false"}
            for args in (("fit", "--out", str(folder)),
                         ("calibrate", "--model", str(folder), "--good", str(CATEGORY / "test" / "good"),
                          "--target-fpr", str(CALIBRATION_FPR))):
                proc = cli(*args, env=env)
                assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder


@pytest.fixture(scope="module")
def calibrated_model(fitted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fitted model per test module: teaching changes it."""
    return Path(shutil.copytree(fitted_model, tmp_path_factory.mktemp("console-model") / "model"))


@dataclass
class ConsoleRun:
    proc: subprocess.Popen[bytes]
    url: str
    output_dir: Path
    log: Path
    summary: Path
    pipeline_file: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def post(self, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(self.url + path, method="POST",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def state_when(self, predicate, timeout: float, what: str) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            try:
                state = self.get("/api/state")
            except OSError:
                return None
            return state if predicate(state) else None

        return wait_for(ready, timeout, what)

    def metrics(self) -> str:
        """The run's /metrics page (its address is the run's first line)."""
        line = next(line for line in self.log.read_text().splitlines() if line.startswith("metrics: "))
        with urllib.request.urlopen(line.removeprefix("metrics: ").strip(), timeout=10) as resp:
            return resp.read().decode()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def start_console_run(tmp: Path, model: Path, images: Path | None, **pipeline: Any) -> ConsoleRun:
    """`images`: the folder camera's (pipeline.source); None: pipeline.cameras are given instead."""
    operators = tmp / "operators"
    operators.write_text(f"# who may teach\nanna {TOKEN}\n")
    port = free_port()
    if images is not None:
        pipeline["source"] = {"kind": "folder", "path": str(images), "fps": 5, "loop": True,
                              **pipeline.pop("source", {})}
    console = {"enabled": True, "port": port, "operators_file": str(operators), **pipeline.pop("console", {})}
    yaml_file = write_pipeline(tmp / "pipeline.yaml", model, tmp / "out", console=console,
                               metrics={"port": free_port()}, **pipeline)
    log = tmp / "run.log"
    proc = start_cli("run", str(yaml_file), "--summary", str(tmp / "summary.json"), log=log)
    run = ConsoleRun(proc, f"http://127.0.0.1:{port}", tmp / "out", log, tmp / "summary.json", yaml_file)
    try:
        run.state_when(lambda s: s["cameras"], 180, "the console to show a frame")
    except AssertionError:
        proc.kill()
        raise AssertionError(log.read_text()[-4000:]) from None
    return run


@pytest.fixture(scope="module")
def one_defect(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A camera that shows one defective part over and over (the operator will call it good) and one good part."""
    folder = tmp_path_factory.mktemp("camera")
    shutil.copy(min((CATEGORY / "test" / "defect").glob("*.png")), folder / "a_part.png")
    shutil.copy(min((CATEGORY / "test" / "good").glob("*.png")), folder / "b_good.png")
    return folder


@pytest.fixture(scope="module")
def console_run(calibrated_model: Path, one_defect: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ConsoleRun]:
    run = start_console_run(tmp_path_factory.mktemp("console-run"), calibrated_model, one_defect)
    yield run
    if run.proc.poll() is None:
        run.stop()
