"""`stream-ad eval`: image AUROC, pixel AUROC and PRO on data.root/test (fits first without a model)."""

from __future__ import annotations

from pathlib import Path

from stream_ad.artefact import default_model_dir, load_model
from stream_ad.commands.fit import fit_and_save
from stream_ad.data import MVTecCategory
from stream_ad.evaluation import evaluate as evaluate_model
from stream_ad.settings import Settings


def evaluate(settings: Settings, *, model: Path | None = None, json_out: Path | None = None) -> int:
    if model is not None:
        fitted = load_model(model, settings)
        model_dir = model
    else:
        model_dir = default_model_dir(settings)
        fitted = fit_and_save(settings, model_dir)
    settings = fitted.settings  # with --model: the artefact's own data.root and method unless given
    category = MVTecCategory(settings.data.root)
    out_json = json_out or model_dir / "evaluation.json"
    report = evaluate_model(fitted, category, out_json)
    print(f"\n{category.name} ({settings.scorer.method}, {report.extra['test_images']} test images)")
    print(report.table())
    print(f"report: {out_json}")
    return 0
