"""The torch-free line runtime end to end: the demo's model exported, then `stream-ad run` on the runtime artefact
in processes where torch cannot be imported (a sys.meta_path finder installed by a sitecustomize in every stage
process, which also records any attempt); the ledger is exact and every score equals the torch path's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import DemoRun, cli, read_jsonl, write_pipeline

FRAMES = 12
RTOL = 1e-4

NO_TORCH = '''
import importlib.abc, os, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            with open(os.environ["NO_TORCH_LOG"], "a") as log:
                log.write(f"{os.getpid()} {name}\\n")
            raise ImportError(f"torch is not installed on this line PC (blocked: {name})")
        return None

sys.meta_path.insert(0, _NoTorch())
'''


@pytest.fixture(scope="module")
def runtime_artefact(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runtime") / "line1"
    proc = cli("export", str(demo_run.model), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def run_line(model: Path, work: Path, env: dict[str, str] | None = None) -> tuple[dict, list[dict], str]:
    cfg = write_pipeline(work / "line.yaml", model, work, metrics={"enabled": False},
                         source={"fps": 20, "max_frames": FRAMES})
    proc = cli("run", str(cfg), "--summary", str(work / "summary.json"), timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "summary.json").read_text()), read_jsonl(work / "verdicts.jsonl"), proc.stderr


def test_a_runtime_artefact_runs_without_torch_and_scores_as_torch_does(
    runtime_artefact: Path, demo_run: DemoRun, tmp_path: Path
) -> None:
    hook = tmp_path / "no_torch"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_TORCH)
    attempts = tmp_path / "torch_imports.log"
    env = {"PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]), "NO_TORCH_LOG": str(attempts)}
    (tmp_path / "line").mkdir()
    summary, verdicts, stderr = run_line(runtime_artefact, tmp_path / "line", env)
    assert not attempts.exists(), attempts.read_text()
    assert "without torch" in stderr
    assert summary["frames_in"] == FRAMES and summary["scored"] == FRAMES
    assert summary["dropped"] == {} and summary["unaccounted"] == 0
    first = summary["first_frame_id"]
    assert sorted(v["frame_id"] for v in verdicts) == list(range(first, first + FRAMES))

    (tmp_path / "torch").mkdir()
    _, torch_verdicts, _ = run_line(demo_run.model, tmp_path / "torch")
    want = {v["path"]: v for v in torch_verdicts}
    assert len(want) == FRAMES
    for verdict in verdicts:
        other = want[verdict["path"]]
        assert verdict["score"] == pytest.approx(other["score"], rel=RTOL)
        assert verdict["verdict"] == other["verdict"] and verdict["threshold"] == other["threshold"]


def test_the_hook_does_block_torch(tmp_path: Path) -> None:
    """The test above means something only if the hook stops a real `import torch` in a child process."""
    import subprocess
    import sys

    (tmp_path / "sitecustomize.py").write_text(NO_TORCH)
    log = tmp_path / "attempts.log"
    proc = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(tmp_path), "NO_TORCH_LOG": str(log)})
    assert proc.returncode == 1 and "blocked: torch" in proc.stderr
    assert log.read_text().split()[1] == "torch"


LINE_VENV = REPO / ".venv-line"


@pytest.mark.skipif(not (LINE_VENV / "bin" / "stream-ad").exists(),
                    reason="no .venv-line: scripts/setup.sh builds it (the torch-free `line` install)")
def test_the_line_install_runs_the_pipeline(runtime_artefact: Path, tmp_path: Path) -> None:
    import subprocess

    python = LINE_VENV / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    cfg = write_pipeline(tmp_path / "line.yaml", runtime_artefact, tmp_path, metrics={"enabled": False},
                         source={"fps": 20, "max_frames": FRAMES})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what the line venv has installed
    proc = subprocess.run([str(LINE_VENV / "bin" / "stream-ad"), "run", str(cfg), "--summary",
                           str(tmp_path / "summary.json")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scored"] == FRAMES and summary["unaccounted"] == 0
