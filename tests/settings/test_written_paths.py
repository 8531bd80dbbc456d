"""The paths a configuration writes, and the example pipelines against the systemd unit's sandbox."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from stream_ad.settings import load_settings
from tests.conftest import REPO

UNIT = REPO / "systemd" / "stream-ad@.service"
EXAMPLES = sorted((REPO / "pipelines").glob("*.yaml"))


def test_written_paths_resolve_each_default_under_output_dir(tmp_path: Path) -> None:
    outputs = [{"kind": "jsonl"}, {"kind": "images", "path": str(tmp_path / "alarms")}, {"kind": "stdout"},
               {"kind": "mqtt", "url": "mqtt://127.0.0.1", "name": "broker"},
               {"kind": "modbus", "host": "127.0.0.1", "outbox": {"path": str(tmp_path / "plc.sqlite")}}]
    s = load_settings(output_dir=str(tmp_path / "out"), runtime={"cache_dir": str(tmp_path / "cache")},
                      pipeline={"sink": {"outputs": outputs}})
    out = tmp_path / "out"
    assert s.written_paths() == {
        "output_dir": out,
        "runtime.checkpoint_dir": out / "checkpoints",
        "runtime.cache_dir": tmp_path / "cache",
        "pipeline.sink.outputs.0.path": out / "verdicts.jsonl",
        "pipeline.sink.outputs.1.path": tmp_path / "alarms",
        "pipeline.sink.outputs.3.outbox.path": out / "outbox" / "broker.sqlite",
        "pipeline.sink.outputs.4.outbox.path": tmp_path / "plc.sqlite",
    }


def unit_service_settings() -> dict[str, list[str]]:
    """The [Service] section of the unit file: each key's values (a key may repeat; values split on spaces)."""
    section, values = None, {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).extend(value.split())
    return values


def writable_roots() -> list[PurePosixPath]:
    """ReadWritePaths (a leading - or + only qualifies the entry) and the StateDirectory under /var/lib."""
    unit = unit_service_settings()
    roots = [PurePosixPath(p.lstrip("-+")) for p in unit.get("ReadWritePaths", [])]
    return roots + [PurePosixPath("/var/lib") / name for name in unit.get("StateDirectory", [])]


def test_the_unit_allows_writes_under_its_working_directory() -> None:
    (cwd,) = unit_service_settings()["WorkingDirectory"]
    assert any(PurePosixPath(cwd).is_relative_to(root) for root in writable_roots()), cwd


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_pipeline_writes_only_where_the_unit_allows(example: Path) -> None:
    (cwd,) = unit_service_settings()["WorkingDirectory"]  # relative paths land there
    roots = writable_roots()
    for key, path in load_settings(example).written_paths().items():
        where = PurePosixPath(os.path.normpath(PurePosixPath(cwd) / path))
        assert any(where.is_relative_to(root) for root in roots), (
            f"{example.name}: {key} {path} is outside the unit's writable paths {[str(r) for r in roots]}"
        )


def test_the_unit_lets_aravis_find_gige_cameras() -> None:
    """aravis enumerates the network interfaces over netlink: without AF_NETLINK it finds no GigE camera."""
    families = set(unit_service_settings()["RestrictAddressFamilies"])
    assert {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} <= families
