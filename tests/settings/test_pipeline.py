"""The pipeline section of the settings: defaults, example files, and errors that name the key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_ad.settings import ConfigError, PipelineSettings, load_settings
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "pipelines").glob("*.yaml"))
# A host or endpoint that listens on every interface (the plant and camera networks too).
ALL_INTERFACES = re.compile(r"^(tcp://)?(0\.0\.0\.0|\*|::|\[::\])(:\d+)?$")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def test_demo_stream_file_spells_out_the_pipeline_defaults() -> None:
    s = load_settings(REPO / "pipelines" / "demo_stream.yaml")
    assert s.pipeline == PipelineSettings()
    assert s == load_settings()


def test_rtsp_line_example_is_valid() -> None:
    s = load_settings(REPO / "pipelines" / "rtsp_line.yaml")
    assert s.pipeline.source.kind == "rtsp" and s.pipeline.source.url.startswith("rtsp://")
    assert [o.kind for o in s.pipeline.sink.outputs] == ["jsonl", "images"]


def _strings(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{key}.{i}")
    elif isinstance(node, str):
        yield key, node


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_pipelines_listen_on_no_wildcard_address(example: Path) -> None:
    """/metrics and the stage endpoints have no authentication: a shipped file binds them to this host only."""
    wildcards = [f"{key}: {value}" for key, value in _strings(yaml.safe_load(example.read_text()))
                 if ALL_INTERFACES.match(value)]
    assert not wildcards, f"{example.name} listens on every interface: {wildcards}"
    assert not ALL_INTERFACES.match(load_settings(example).pipeline.metrics.host)
    assert ALL_INTERFACES.match("0.0.0.0") and ALL_INTERFACES.match("tcp://*:5560")  # the pattern itself


def test_unknown_pipeline_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.infer\.max_batchh: unknown key"):
        load_settings(_write(tmp_path, "pipeline:\n  infer:\n    max_batchh: 4\n"))


def test_block_policy_is_refused_for_a_live_camera(tmp_path: Path) -> None:
    text = "pipeline:\n  policy: block\n  source:\n    kind: rtsp\n    url: rtsp://127.0.0.1/cam\n"
    with pytest.raises(ConfigError, match="only for offline file sources"):
        load_settings(_write(tmp_path, text))
    text = "pipeline:\n  infer:\n    policy: block\n  source:\n    kind: rtsp\n    url: rtsp://127.0.0.1/cam\n"
    with pytest.raises(ConfigError, match="only for offline file sources"):
        load_settings(_write(tmp_path, text))
    assert load_settings(_write(tmp_path, "pipeline:\n  policy: block\n")).pipeline.policy == "block"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pipeline:\n  source:\n    kind: rtsp\n", "source.url is not set"),
        ("pipeline:\n  source:\n    kind: video\n", "source.path"),
        ("pipeline:\n  stages: [preprocess, infer, sink]\n", "must start with 'source'"),
        ("pipeline:\n  stages: [source, infer, magic, sink]\n", "unknown stage 'magic'"),
        ("pipeline:\n  stages: [source, decide, infer, sink]\n", "'decide' needs the scores"),
        ("pipeline:\n  policy: drop_random\n", r"pipeline\.policy"),
        ("pipeline:\n  sink:\n    outputs: [{kind: plc}]\n", r"pipeline\.sink\.outputs\.0\.kind"),
        ("pipeline:\n  source:\n    camera: 'cam 1'\n", r"pipeline\.source\.camera"),
    ],
)
def test_invalid_pipelines_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, text))


@pytest.mark.parametrize("pipeline", [{"transport": "tcp"}, {"decide": {"endpoint": "tcp://127.0.0.1:7004"}},
                                      {"supervisor": {"endpoint": "tcp://127.0.0.1:7000"}}])
def test_tcp_without_keys_is_refused_naming_the_setting_and_the_command(pipeline: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"`stream-ad keys DIR`.*pipeline\.keys_dir.*pipeline\.insecure_tcp"):
        load_settings(pipeline=pipeline)
    assert load_settings(pipeline={**pipeline, "keys_dir": "/etc/stream-ad/keys"}).pipeline.uses_tcp()
    assert load_settings(pipeline={**pipeline, "insecure_tcp": True}).pipeline.keys_dir is None
    assert not load_settings().pipeline.uses_tcp()  # ipc needs no keys


def test_environment_overrides_pipeline_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_AD_PIPELINE__INFER__MAX_BATCH", "3")
    monkeypatch.setenv("STREAM_AD_PIPELINE__SOURCE__FPS", "12.5")
    s = load_settings()
    assert s.pipeline.infer.max_batch == 3 and s.pipeline.source.fps == 12.5
    monkeypatch.setenv("STREAM_AD_PIPELINE__INFER__MAX_BACH", "3")
    with pytest.raises(ConfigError, match="STREAM_AD_PIPELINE__INFER__MAX_BACH"):
        load_settings()
