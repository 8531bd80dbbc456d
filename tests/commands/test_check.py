"""`stream-ad check`: a pipeline validated without starting it, one finding per line."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_ad.commands.check import check, pipeline_findings
from tests.conftest import PIPED

CATEGORY = PIPED / "PA_BDP01_TL"


def write(tmp_path: Path, settings: dict[str, Any]) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def good_pipeline(tmp_path: Path, model: Path) -> dict[str, Any]:
    return {"data": {"root": str(CATEGORY)}, "output_dir": str(tmp_path / "out"),
            "scorer": {"params": {"coreset_ratio": 0.1}},
            "pipeline": {"model": str(model), "decide": {"threshold": 3.0}, "metrics": {"port": 0},
                         "sink": {"outputs": [{"kind": "jsonl"}, {"kind": "mqtt", "url": "mqtt://127.0.0.1"}]}}}


def test_a_good_pipeline_passes_every_check(piped_patchcore: tuple[Any, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, good_pipeline(tmp_path, piped_patchcore[1]))
    assert check(path) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("ok   ") for line in lines), lines
    topics = [line.split()[1] for line in lines]
    assert topics[:3] == ["settings:", "model:", "source:"] and "endpoint:" in topics
    assert any("pipeline.sink.outputs.1.outbox.path" in line and "mqtt.sqlite" in line for line in lines)
    assert not (tmp_path / "out").exists()  # checked, not created


def test_each_problem_is_one_failing_line(piped_patchcore: tuple[Any, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    settings = good_pipeline(tmp_path, piped_patchcore[1])
    settings["scorer"]["params"]["num_neighbors"] = 3  # a scoring param: the artefact scores with 9
    settings["output_dir"] = str(blocker / "out")
    pipe = settings["pipeline"]
    pipe["source"] = {"kind": "rtsp", "url": "rtsp://camera:99999/stream"}
    pipe["transport"], pipe["tcp_base_port"] = "tcp", taken.getsockname()[1] - 3  # the decide stage's port is taken
    pipe["keys_dir"] = str(tmp_path / "no_keys")  # never made
    with taken:
        assert check(write(tmp_path, settings)) == 2
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert any("model:" in f and "scorer.params.num_neighbors" in f and "the artefact's 9, given 3" in f
               for f in failed), failed
    assert any("source:" in f and "pipeline.source.url" in f for f in failed), failed
    assert any("endpoint: decide tcp 127.0.0.1" in f and "in use" in f for f in failed), failed
    assert any("keys: cannot read the CURVE key" in f and "no_keys/server.key_secret" in f and "stream-ad keys" in f
               for f in failed), failed
    assert any("path: output_dir" in f and "is a file, not a folder" in f for f in failed), failed


def test_invalid_settings_are_the_one_finding(tmp_path: Path) -> None:
    (finding,) = pipeline_findings(write(tmp_path, {"scorer": {"params": {"coreset_ratoi": 0.1}}}))
    assert not finding.ok and finding.topic == "settings" and "scorer.params.coreset_ratoi" in finding.detail
    assert "\n" not in finding.line()


def test_each_camera_is_checked_with_its_own_model_and_source(piped_patchcore: tuple[Any, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    settings = good_pipeline(tmp_path, piped_patchcore[1])
    settings["pipeline"]["cameras"] = [
        {"camera": "top", "path": str(CATEGORY / "test")},  # pipeline.model
        {"camera": "side", "path": str(CATEGORY / "test"), "model": str(piped_patchcore[1])},  # the same one
        {"camera": "lid", "path": str(tmp_path / "nowhere"), "model": str(tmp_path / "no-model")},
    ]
    assert check(write(tmp_path, settings)) == 2
    lines = capsys.readouterr().out.splitlines()
    models = [line for line in lines if line.split()[1] == "model:"]
    assert len(models) == 2  # one line per artefact, not per camera
    assert models[0].startswith("ok   ") and models[1].startswith("FAIL") and str(tmp_path / "no-model") in models[1]
    sources = [line for line in lines if line.split()[1] == "source:"]
    assert [line.split()[0] for line in sources] == ["ok", "ok", "FAIL"]
    assert "camera lid:" in sources[2] and "(setting pipeline.cameras.2.path)" in sources[2]
