"""The evaluation report as one self-contained HTML page (every picture a base64 PNG inside it; no external file,
script or style): the metrics table, recall at the calibrated threshold and at 1 % and 5 % false-alarm rate, ROC and
precision-recall curves per defect type, score histograms of good against each defect type with the threshold
marked, and the worst misses and false alarms as image | anomaly-map overlay | mask.

Plots are drawn by matplotlib's Agg canvas (a Figure, never pyplot: no display, no global state)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

from stream_ad.data import read_image, read_mask
from stream_ad.evaluation.tally import FALSE_ALARM_RATES, OVERALL, Example, Rows, Tally
from stream_ad.overlay import draw_overlay

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1300px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
.note{color:#555}"""


def _png(fig: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _curves(tally: Tally) -> str:
    fig = Figure(figsize=(11, 4.5))
    roc, pr = fig.subplots(1, 2)
    for name in [*tally.defect_types, OVERALL]:
        good, defective = tally.scores_of(name)
        labels = np.r_[np.zeros(len(good)), np.ones(len(defective))]
        scores = np.r_[good, defective]
        fpr, tpr, _ = roc_curve(labels, scores)
        precision, recall, _ = precision_recall_curve(labels, scores)
        style = {"linewidth": 2.5, "color": "black"} if name == OVERALL else {}
        roc.plot(fpr, tpr, label=f"{name} (AUROC {np.trapezoid(tpr, fpr):.3f})", **style)
        pr.step(recall, precision, where="post", label=f"{name} (AP {average_precision_score(labels, scores):.3f})",
                **style)
    roc.plot([0, 1], [0, 1], ":", color="grey")
    roc.set(xlabel="false-alarm rate (good images)", ylabel="recall (defective images)", title="ROC, image level")
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall, image level", ylim=(0, 1.02))
    for ax in (roc, pr):
        ax.legend(fontsize=8, loc="lower right" if ax is roc else "lower left")
        ax.grid(alpha=0.3)
    return _png(fig, "ROC and precision-recall curves per defect type")


def _histograms(tally: Tally) -> str:
    names = tally.defect_types
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, name in zip(axes, names):
        good, defective = tally.scores_of(name)
        edges = np.histogram_bin_edges(np.r_[good, defective], bins=30)
        ax.hist(good, edges, alpha=0.6, color="tab:green", label=f"good ({len(good)})")
        ax.hist(defective, edges, alpha=0.6, color="tab:red", label=f"{name} ({len(defective)})")
        if tally.threshold is not None:
            ax.axvline(tally.threshold, color="black", linestyle="--", label=f"threshold {tally.threshold:.4g}")
        ax.set(title=name, xlabel="image score", ylabel="images")
        ax.legend(fontsize=8)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    return _png(fig, "score histograms, good against each defect type")


def _triptych(example: Example, tally: Tally, pixel_threshold: float | None) -> str:
    """image | overlay | mask of a kept example, at the kept map's size."""
    sample, (h, w) = example.sample, example.shape
    size = example.amap.shape[::-1]
    # It was scored at this size, under the model's pixel limit.
    frame = cv2.resize(read_image(sample.path, max_pixels=h * w), size, interpolation=cv2.INTER_AREA)
    overlay = cv2.cvtColor(draw_overlay(frame, example.amap, example.score, tally.threshold, pixel_threshold),
                           cv2.COLOR_BGR2RGB)
    fig = Figure(figsize=(13, 4.4 * h / w + 0.8), layout="constrained")
    image_ax, overlay_ax, mask_ax = fig.subplots(1, 3)
    image_ax.imshow(frame)
    overlay_ax.imshow(overlay)
    if sample.label and sample.mask_path is None:
        mask_title = "mask: none given"
    else:
        mask = cv2.resize(read_mask(sample, (h, w)).astype(np.float32), size, interpolation=cv2.INTER_AREA)
        mask_ax.imshow(mask, cmap="gray", vmin=0, vmax=1)
        mask_title = "mask" if sample.label else "mask (good image: none)"
    for ax, title in zip((image_ax, overlay_ax, mask_ax), ("image", "anomaly map", mask_title)):
        ax.set_title(title)
        ax.set_axis_off()
    fig.suptitle(f"{sample.defect}: {sample.path.name}   score {example.score:.4g}", fontsize=11)
    return f"<p>{html.escape(str(sample.path))}</p>" + _png(fig, f"{sample.defect} {sample.path.name}")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _examples(title: str, examples: list[Example], empty: str, tally: Tally, pixel_threshold: float | None) -> str:
    pictures = "".join(_triptych(e, tally, pixel_threshold) for e in examples) or f"<p>{html.escape(empty)}</p>"
    return f"<h2>{html.escape(title)}</h2>{pictures}"


def write_html(path: Path, title: str, rows: Rows, note: str | None, tally: Tally,
               pixel_threshold: float | None) -> None:
    """Write the page to `path`: `rows` (the report's metrics per defect type), `note` (what they leave out) and
    `tally` (the scores and the kept examples)."""
    calibrated = tally.threshold is not None
    n_good = len(tally.scores_of(OVERALL)[0])
    metrics = _table(["defect type", "images", "image AUROC", "pixel AUROC", "PRO"],
                     [[name, r["images"], r["image_auroc"], r["pixel_auroc"], r["pro"]] for name, r in rows.items()])
    recall = _table(
        ["defect type", "defective images", "recall at calibrated threshold",
         *(f"recall at {100 * rate:g} % false alarms" for rate in FALSE_ALARM_RATES)],
        [[name, *r.values()] for name, r in tally.recall_rows().items()],
    )
    false_alarms = tally.false_alarms_at_threshold()
    threshold_note = (f"calibrated threshold {tally.threshold:.4g} (alarm: score above it): "
                      f"{false_alarms['above_threshold']} false alarms on the {n_good} good images" if false_alarms
                      else "no calibrated threshold (run stream-ad calibrate): its recall and mark are left out")
    allowed = ", ".join(f"{100 * r:g} %: {math.floor(r * n_good)}" for r in FALSE_ALARM_RATES)
    which = "at or below the threshold" if calibrated else "the lowest-scored (no threshold)"
    alarms = "above the threshold" if calibrated else "the highest-scored (no threshold)"
    parts = [
        f"<h1>stream_ad evaluation: {html.escape(title)}</h1>",
        f"<p>{len(tally.samples)} test images, {n_good} good; {html.escape(threshold_note)}.</p>",
        metrics,
        f'<p class="note">{html.escape(note)}</p>' if note else "",
        "<h2>Recall</h2>", recall,
        f'<p class="note">False alarms allowed on the {n_good} good test images: {allowed}.</p>',
        "<h2>Curves</h2>", _curves(tally),
        "<h2>Score histograms</h2>", _histograms(tally),
        _examples(f"Worst misses: defective images {which}", tally.misses.examples(),
                  "none: every defective image scored above the threshold", tally, pixel_threshold),
        _examples(f"Worst false alarms: good images {alarms}", tally.false_alarms.examples(),
                  "none: every good image scored at or below the threshold", tally, pixel_threshold),
    ]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>stream_ad evaluation: '
            f"{html.escape(title)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
