"""`python -m benchmarks.calibration_split CATEGORY...`: the calibration hold-out against cross-fitting
(calibration.folds), as `stream-ad fit` and `stream-ad calibrate` run them, on MVTec-layout categories.

Per category and way: fit (timed) and calibrate through the commands' own functions into OUT/CATEGORY-folds{K}
(0: the hold-out), then the served model scores test/: image AUROC, the threshold's n, k and bound (or why it could
not be set), the recall at the threshold per defect type and overall, and the false alarms on test/good, images that
neither the served model nor any fold model saw, against the stated bound. Printed as a table, written as JSON.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.figures import categories_parser, machine, write_figures
from stream_ad.artefact import load_model
from stream_ad.calibration.calibrate import calibrate_artefact
from stream_ad.commands.fit import fit_and_save
from stream_ad.data import MVTecCategory
from stream_ad.errors import CalibrationError
from stream_ad.settings import load_settings


def measure(root: Path, folds: int, target_fpr: float, config: Path | None, out: Path) -> dict[str, Any]:
    settings = load_settings(config, data={"root": str(root)}, output_dir=str(out),
                             calibration={"folds": folds, "target_fpr": target_fpr})
    model_dir = out / f"{root.name}-folds{folds}"
    start = time.perf_counter()
    fit_and_save(settings, model_dir)
    row: dict[str, Any] = {"category": root.name, "folds": folds, "fit_s": time.perf_counter() - start}
    try:
        record = calibrate_artefact(settings, model_dir, None)
    except CalibrationError as exc:
        record, row["calibration_error"] = None, str(exc)
    model = load_model(model_dir, settings)
    test = MVTecCategory(root).labelled_images()
    by_type: dict[str, list[float]] = {}
    for sample, score in zip(test.samples, model.score_files([s.path for s in test.samples]), strict=True):
        by_type.setdefault(sample.defect, []).append(float(score))
    good = np.asarray(by_type.pop("good"))
    defective = np.concatenate([np.asarray(v) for v in by_type.values()])
    row["image_auroc"] = float(roc_auc_score(np.r_[np.zeros(good.size), np.ones(defective.size)],
                                             np.r_[good, defective]))
    if record is not None:
        value = record["value"]
        row |= {"n_good": record["n_good"], "allowed_false_alarms": record["allowed_false_alarms"],
                "fpr_upper_bound": record["fpr_upper_bound"], "recall": float((defective > value).mean()),
                "recall_per_type": {k: float((np.asarray(v) > value).mean()) for k, v in by_type.items()},
                "test_good": int(good.size), "false_alarms_on_test_good": int((good > value).sum())}
    return row


def report(figures: dict[str, Any]) -> str:
    lines = [f"target false-alarm rate {figures['target_fpr']:g} at 95 %; folds 0: the hold-out",
             "category       folds  fit s  image AUROC     n    k   bound  recall  false alarms on test/good  "
             "recall per defect type"]
    for r in figures["rows"]:
        head = f"{r['category']:<15}{r['folds']:>5}{r['fit_s']:>7.0f}{r['image_auroc']:>13.4f}"
        if "calibration_error" in r:
            lines.append(f"{head}  cannot calibrate: {r['calibration_error'][:90]}")
            continue
        per = ", ".join(f"{k} {v:.2f}" for k, v in r["recall_per_type"].items())
        lines.append(f"{head}{r['n_good']:>6}{r['allowed_false_alarms']:>5}{r['fpr_upper_bound']:>8.4f}"
                     f"{r['recall']:>8.3f}  {r['false_alarms_on_test_good']:>3} / {r['test_good']:<21}{per}")
    return "\n".join(lines)


def main() -> None:
    parser = categories_parser("python -m benchmarks.calibration_split", __doc__,
                               "settings YAML (method, preprocessing, runtime)")
    parser.add_argument("--folds", type=int, default=4, help="cross-fitting's folds (default 4)")
    parser.add_argument("--target-fpr", type=float, default=0.02, help="calibration.target_fpr (default 0.02)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/calibration_split"),
                        help="model artefacts and figures (default runs/bench/calibration_split)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"machine": machine(), "target_fpr": args.target_fpr, "rows": []}
    for root in args.categories:
        for folds in (0, args.folds):
            figures["rows"].append(measure(root, folds, args.target_fpr, args.config, args.out))
            print(json.dumps(figures["rows"][-1]), flush=True)
    write_figures(figures, args.out / "calibration_split.json", report)


if __name__ == "__main__":
    main()
