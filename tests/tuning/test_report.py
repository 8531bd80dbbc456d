"""The report names each candidate's taps: in the terminal table, the Markdown and the JSON (with the backbone.layers
it would write)."""

from __future__ import annotations

import json
from pathlib import Path

from stream_ad.tuning import Candidate, Figures, Trial, rank, write_reports
from stream_ad.tuning.report import table

LABELS = (0, 0, 1, 1)
OWN = ("features.6", "features.13")
OTHER = ("features.6", "features.10", "features.13")


def test_every_form_of_the_report_shows_the_taps(tmp_path: Path) -> None:
    trials = [Trial(Candidate("resize", 224, 0.01, layers=layers), Figures(1.0, 0.5, 1.0, None, (0.0, 0.1, 1.0, 2.0)))
              for layers in (OWN, OTHER)]
    outcomes = rank(trials, LABELS)
    json_report, md = write_reports(tmp_path, outcomes, {"taps": "the settings' own"})
    rows = json.loads(json_report.read_text())["candidates"]
    assert [r["name"] for r in rows] == ["patchcore resize 224 ratio 0.01 taps features.6+features.13",
                                         "patchcore resize 224 ratio 0.01 taps features.6+features.10+features.13"]
    assert [r["settings"]["backbone"]["layers"] for r in rows] == [list(OWN), list(OTHER)]
    markdown = md.read_text()
    assert "- taps: the settings' own" in markdown
    assert all(r["name"] in markdown and r["name"] in table(outcomes) for r in rows)
