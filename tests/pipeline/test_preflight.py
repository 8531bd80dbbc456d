"""Checks before any process starts: a folder source's error names the setting the folder came from."""

from __future__ import annotations

from pathlib import Path

from stream_ad.pipeline.preflight import check_sources
from stream_ad.settings import load_settings


def test_a_missing_folder_names_data_root_when_it_came_from_there(tmp_path: Path) -> None:
    [finding] = check_sources(load_settings(data={"root": str(tmp_path / "line3")}))  # streams data.root/test
    assert not finding.ok
    assert str(tmp_path / "line3" / "test") in finding.detail and "(setting data.root)" in finding.detail
    assert "pipeline.source.path" not in finding.detail


def test_a_missing_folder_names_source_path_when_it_is_set(tmp_path: Path) -> None:
    settings = load_settings(data={"root": str(tmp_path)}, pipeline={"source": {"path": str(tmp_path / "cam")}})
    [finding] = check_sources(settings)
    assert not finding.ok and "(setting pipeline.source.path)" in finding.detail


def test_an_empty_folder_names_its_setting(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    [finding] = check_sources(load_settings(data={"root": str(tmp_path)}))
    assert not finding.ok and "no images" in finding.detail and "(setting data.root)" in finding.detail


def test_a_bad_rtsp_url_is_named_without_its_password() -> None:
    url = "rtsp://viewer:s3cret@camera:99999/stream"
    [finding] = check_sources(load_settings(pipeline={"source": {"kind": "rtsp", "url": url}}))
    assert not finding.ok and "rtsp://viewer:***@camera:99999/stream" in finding.detail
    assert "s3cret" not in finding.detail
