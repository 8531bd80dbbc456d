"""`stream-ad predict PATH...`: score image files and folders (recursively) with a saved model artefact. One line per
image (path, score, score / threshold, verdict), and in a new run folder an overlay PNG per image and
predictions.csv with the same lines; a run never writes into a previous run's folder."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from stream_ad.artefact import load_model, read_manifest, serving_model_dir
from stream_ad.commands.errors import CommandError
from stream_ad.data import image_paths
from stream_ad.model import AnomalyModel
from stream_ad.overlay import draw_overlay
from stream_ad.settings import Settings

CSV_NAME = "predictions.csv"
CSV_COLUMNS = ("path", "score", "score_normalised", "verdict", "overlay")
UNCALIBRATED = "uncalibrated"


@dataclass(frozen=True)
class Prediction:
    path: Path
    score: float
    threshold: float | None  # None: the artefact is not calibrated
    overlay: str  # the overlay's file name in the run folder

    @property
    def score_normalised(self) -> float | None:
        """score / threshold as the decide stage's verdicts carry it (None without a positive threshold)."""
        return self.score / self.threshold if self.threshold is not None and self.threshold > 0 else None

    @property
    def verdict(self) -> str:
        if self.threshold is None:
            return UNCALIBRATED
        return "anomaly" if self.score > self.threshold else "ok"  # as the decide stage decides

    def line(self) -> str:
        normalised = "-" if self.score_normalised is None else f"{self.score_normalised:.3f}"
        return f"{self.path}  score {self.score:.4f}  normalised {normalised}  {self.verdict}"

    def row(self) -> tuple[str, ...]:
        normalised = "" if self.score_normalised is None else repr(self.score_normalised)
        return str(self.path), repr(self.score), normalised, self.verdict, self.overlay


def new_run_folder(out: Path | None, parent: Path) -> Path:
    """`out` when it is new or empty, else an error; without `out`, a new parent/<timestamp>[-n] folder."""
    if out is not None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise CommandError(f"--out: {out} already exists and is not an empty folder; give a new folder")
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder, n = parent / stamp, 1
    while True:  # mkdir, not exists(): two runs starting together still get a folder each
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            n += 1
            folder = parent / f"{stamp}-{n}"


def predictions(model: AnomalyModel, paths: Sequence[Path], threshold: float | None, pixel_threshold: float | None,
                folder: Path) -> Iterator[Prediction]:
    """Score `paths` in batches, writing each image's overlay into `folder` as it goes."""
    numbered = enumerate(paths)  # consumed batch by batch: zip stops at the batch's end before taking the next
    for frames in model.image_batches(paths).frames():
        pred = model.predict(frames)
        for frame, score, amap, (i, path) in zip(frames, pred.scores, pred.maps, numbered):
            name = f"{i:05d}_{path.stem}.png"  # numbered: equal names from different folders stay apart
            picture = draw_overlay(frame, amap, float(score), threshold, pixel_threshold)
            if not cv2.imwrite(str(folder / name), picture):
                raise OSError(f"cannot write {folder / name}")
            yield Prediction(path, float(score), threshold, name)


def predict(settings: Settings, paths: Sequence[Path], *, model: Path | None = None, out: Path | None = None) -> int:
    images = image_paths(paths, "predict")  # a missing path is named before the model loads
    model_dir = model or serving_model_dir(settings)
    manifest = read_manifest(model_dir)
    threshold = manifest.threshold_value
    anomaly_model = load_model(model_dir, settings)
    folder = new_run_folder(out, settings.output_dir / "predict")
    how = f"threshold {threshold:.4f}" if threshold is not None else "no threshold: run `stream-ad calibrate`"
    print(f"scoring {len(images)} images with {model_dir} ({how})", file=sys.stderr, flush=True)
    verdicts: Counter[str] = Counter()
    with (folder / CSV_NAME).open("w", newline="") as f:
        table = csv.writer(f)
        table.writerow(CSV_COLUMNS)
        for p in predictions(anomaly_model, images, threshold, manifest.pixel_threshold_value, folder):
            print(p.line(), flush=True)
            table.writerow(p.row())
            verdicts[p.verdict] += 1
    counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(verdicts.items()))
    print(f"{len(images)} images: {counts}; overlays and {CSV_NAME} in {folder}", file=sys.stderr)
    return 0
