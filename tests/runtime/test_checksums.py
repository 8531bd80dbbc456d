"""SHA256SUMS of a cache folder: what makes an entry stale (a file changed, missing or added, no sums), in the format
`sha256sum -c` reads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stream_ad.runtime.checksums import mismatch, read_sums, seal, sha256_file


@pytest.fixture()
def entry(tmp_path: Path) -> Path:
    folder = tmp_path / "entry"
    (folder / "compiled").mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"\x00" * 64)
    (folder / "compiled" / "engine").write_bytes(b"engine")
    seal(folder)
    return folder


def test_a_sealed_folder_matches_and_coreutils_agrees(entry: Path) -> None:
    assert mismatch(entry) is None
    assert read_sums(entry) == {"compiled/engine": sha256_file(entry / "compiled" / "engine"),
                                "model.bin": sha256_file(entry / "model.bin")}
    if shutil.which("sha256sum"):
        assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=entry).returncode == 0


def test_each_way_a_folder_goes_stale(entry: Path) -> None:
    (entry / "model.bin").write_bytes(b"\x00" * 63 + b"\x01")
    assert mismatch(entry).startswith("model.bin has sha256 ")
    seal(entry)
    (entry / "compiled" / "other").write_bytes(b"dropped in later")
    assert mismatch(entry) == "compiled/other is not in SHA256SUMS"
    seal(entry)
    (entry / "compiled" / "engine").unlink()
    assert mismatch(entry) == "compiled/engine is missing"
    (entry / "SHA256SUMS").unlink()
    assert mismatch(entry) == "it has no SHA256SUMS"
    (entry / "SHA256SUMS").write_text("not a sum line\n")
    assert "SHA256SUMS line 1 is not 'SHA256  NAME'" in mismatch(entry)
