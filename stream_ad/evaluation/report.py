"""Score labelled test images and report image AUROC, pixel AUROC and PRO per defect type and overall (image AUROC
only where no masks were given). Predictions stream into a Tally (stream_ad.evaluation.tally): memory stays bounded
whatever the number of test pixels."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from stream_ad.data import LabelledImages, Sample
from stream_ad.evaluation.accuracy import BINS
from stream_ad.evaluation.html_report import write_html
from stream_ad.evaluation.tally import OVERALL, Rows, Tally
from stream_ad.model import AnomalyModel, FramePrediction

__all__ = ["OVERALL", "Report", "TestPredictions", "evaluate", "metrics_for", "predict_test"]

# Scoring holds about 15 bytes per frame pixel of a batch (the frames, the map's sums and counts, the map): a test
# batch is cut at this many pixels, so 12 MP frames go two at a time whatever runtime.batch_size says.
BATCH_PIXELS = 24_000_000
NO_MASKS = "no defect masks (eval --masks DIR, or ground_truth/ in the MVTec layout): image AUROC only"


@dataclass
class TestPredictions:
    samples: list[Sample]
    scores: np.ndarray
    maps: list[np.ndarray]  # each at its image's own size
    seconds: float = 0.0


@dataclass
class Report:
    category: str
    rows: Rows = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # what the table leaves out, and why

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "metrics": self.rows, "note": self.note, **self.extra}

    def table(self) -> str:
        lines = [f"{'defect type':<16}{'images':>8}{'image AUROC':>13}{'pixel AUROC':>13}{'PRO':>8}"]
        for name, r in self.rows.items():
            cells = [f"{r[k]:.4f}" if r[k] is not None else "-" for k in ("image_auroc", "pixel_auroc", "pro")]
            lines.append(f"{name:<16}{r['images']:>8}{cells[0]:>13}{cells[1]:>13}{cells[2]:>8}")
        return "\n".join(lines + ([self.note] if self.note else []))


def _pixels(path: Path) -> int:
    """The image's pixel count from its header; 0 for a file the header reader rejects (scoring names it)."""
    try:
        with Image.open(path) as img:
            return img.size[0] * img.size[1]
    except Exception:  # noqa: BLE001 - whatever the reader raises, the decoder's error is the one to show
        return 0


def _batches(samples: Sequence[Sample], batch_size: int) -> list[list[Path]]:
    """The samples' paths in batches of at most `batch_size` images and BATCH_PIXELS pixels (one image at least)."""
    batches: list[list[Path]] = [[]]
    pixels = 0
    for sample in samples:
        n = _pixels(sample.path)
        if batches[-1] and (len(batches[-1]) == batch_size or pixels + n > BATCH_PIXELS):
            batches.append([])
            pixels = 0
        batches[-1].append(sample.path)
        pixels += n
    return [b for b in batches if b]


def _predictions(model: AnomalyModel, samples: Sequence[Sample]) -> Iterator[FramePrediction]:
    """The samples' predictions, a batch at a time, with a progress bar."""
    batches = _batches(samples, model.settings.runtime.batch_size)
    for paths in tqdm(batches, desc="test", unit="batch"):
        yield from model.predict_files(paths)


def predict_test(model: AnomalyModel, samples: Sequence[Sample]) -> TestPredictions:
    """Every test image's score and full-size map, kept: for small test sets (tests, the benchmark's children)."""
    scores, maps = [], []
    start = time.perf_counter()
    for pred in _predictions(model, samples):
        scores.append(pred.scores)
        maps.extend(pred.maps)
    return TestPredictions(list(samples), np.concatenate(scores), maps, time.perf_counter() - start)


def metrics_for(preds: TestPredictions, with_masks: bool) -> Rows:
    tally = Tally(with_masks)
    for sample, score, amap in zip(preds.samples, preds.scores, preds.maps, strict=True):
        tally.add(sample, score, amap)
    return tally.rows()


def evaluate(
    model: AnomalyModel, images: LabelledImages, out_json: Path | None = None, *, html_out: Path | None = None,
    threshold: float | None = None, pixel_threshold: float | None = None,
) -> Report:
    """Score `images` with `model`, one batch at a time into a Tally; write the JSON report to `out_json` and the
    HTML report with pictures to `html_out` (each when given). `threshold` / `pixel_threshold`: the model's calibrated
    ones (None when uncalibrated): the recall at the threshold, the histograms' mark and the overlays use them."""
    tally = Tally(images.has_masks, threshold)
    samples = iter(images.samples)
    start = time.perf_counter()
    for pred in _predictions(model, images.samples):
        for score, amap in zip(pred.scores, pred.maps, strict=True):
            tally.add(next(samples), score, amap)
    seconds = time.perf_counter() - start
    report = Report(images.name, tally.rows(), note=None if images.has_masks else NO_MASKS)
    report.extra["test_seconds"] = round(seconds, 2)
    report.extra["test_images"] = len(tally.samples)
    report.extra["threshold"] = threshold
    report.extra["recall"] = tally.recall_rows()
    report.extra["false_alarms_at_threshold"] = tally.false_alarms_at_threshold()
    if images.has_masks:
        report.extra["pixel_metrics"] = {
            "method": f"binned: {BINS} bins over the score range; max_error bounds |binned - exact| for every row",
            "max_error": tally.max_errors(),
        }
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if html_out is not None:
        write_html(html_out, images.name, report.rows, report.note, tally, pixel_threshold)
    return report
