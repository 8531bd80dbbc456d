"""`stream-ad teach list | rollback`: the versions a model's teachings made, and undoing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ad.artefact import read_manifest
from stream_ad.cli import main
from tests.teaching import teach_defect


def test_list_and_roll_back(artefact_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artefact = artefact_copy
    assert main(["teach", "list", str(artefact)]) == 0
    assert "version 0, as fitted" in capsys.readouterr().out
    teach_defect(artefact, "anna")
    teach_defect(artefact, "ben")
    assert main(["teach", "list", str(artefact)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("version 1: ") and " anna taught cam0 frame 7 " in listed[0]
    assert listed[1].startswith("version 2: ") and " ben " in listed[1]
    assert main(["teach", "rollback", str(artefact)]) == 0
    assert "is at version 1" in capsys.readouterr().out
    assert main(["teach", "rollback", str(artefact), "--to", "3"]) == 2
    assert "roll back to 0..0, not 3" in capsys.readouterr().err
    assert [e["operator"] for e in read_manifest(artefact).teaching] == ["anna"]
