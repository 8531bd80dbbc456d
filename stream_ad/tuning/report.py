"""Every candidate's figures, chosen or not and why: a table for the terminal, tune_report.json and tune_report.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from stream_ad.tuning.search import Figures, Outcome

COLUMNS = ("candidate", "fit s", "score s", "image AUROC", "pixel AUROC", "vs default [interval]", "chosen", "why")


def _cells(outcome: Outcome) -> list[str]:
    f = outcome.trial.figures

    def num(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return [outcome.trial.candidate.name, num(f and f.fit_s, 1), num(f and f.score_s, 1),
            num(f and f.image_auroc, 4), num(f and f.pixel_auroc, 4), _versus(outcome),
            "yes" if outcome.chosen else "", outcome.why]


def _versus(outcome: Outcome) -> str:
    if outcome.interval is not None:
        return f"{outcome.ranked_on.split()[0]} {outcome.interval}"
    return "-" if outcome.trial.figures is None else "(the default)"


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [list(COLUMNS)] + [_cells(o) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def markdown(outcomes: Sequence[Outcome], header: str) -> str:
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(o)) + " |" for o in outcomes]
    return "\n".join(lines) + "\n"


def _figures_json(figures: Figures) -> dict[str, Any]:
    """The figures without the binned pixels the ranking resampled (megabytes of counts), with their binning's
    error bound where there are any."""
    out = {f.name: getattr(figures, f.name) for f in fields(figures) if f.name != "pixels"}
    if figures.pixels is not None:
        out["ranking_pixel_auroc"] = {"value": figures.pixels.auroc(), "max_error": figures.pixels.max_error()}
    return out


def to_json(outcomes: Sequence[Outcome], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, "candidates": [
        {"name": o.trial.candidate.name, "settings": o.trial.candidate.overrides(),
         "figures": None if o.trial.figures is None else _figures_json(o.trial.figures), "skipped": o.trial.skipped,
         "versus_default": None if o.interval is None else {**asdict(o.interval), "of": o.ranked_on.value},
         "image_versus_default": None if o.image_interval is None else asdict(o.image_interval),
         "chosen": o.chosen, "why": o.why}
        for o in outcomes
    ]}


def write_reports(out: Path, outcomes: Sequence[Outcome], extra: dict[str, Any]) -> tuple[Path, Path]:
    """tune_report.json (`extra`: what was tuned on, the budget) and tune_report.md in `out`."""
    json_path, md_path = out / "tune_report.json", out / "tune_report.md"
    json_path.write_text(json.dumps(to_json(outcomes, extra), indent=2) + "\n")
    header = "# stream-ad tune\n\n" + "\n".join(f"- {k}: {v}" for k, v in extra.items())
    md_path.write_text(markdown(outcomes, header))
    return json_path, md_path
