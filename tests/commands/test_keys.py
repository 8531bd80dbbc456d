"""`stream-ad keys DIR`: the key pairs a tcp pipeline loads, for their owner only, never overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stream_ad.cli import main
from stream_ad.pipeline.curve import load_keys


def test_keys_are_made_once_for_the_pipeline_to_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "etc" / "keys"
    assert main(["keys", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(folder / n) for n in ("server.key", "server.key_secret", "client.key",
                                                     "client.key_secret")]
    assert f"pipeline.keys_dir: {folder}" in err
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    load_keys(folder)  # both pairs, readable by their owner only
    before = (folder / "client.key_secret").read_bytes()
    assert main(["keys", str(folder)]) == 2
    assert "already holds keys" in capsys.readouterr().err
    assert (folder / "client.key_secret").read_bytes() == before
