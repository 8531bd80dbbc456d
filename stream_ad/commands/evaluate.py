"""`stream-ad eval`: image AUROC, pixel AUROC and PRO on labelled test images: plain folders (--good, --defects,
--masks) or data.root/test (fits first without a model); the JSON report and, beside it, the HTML one with pictures."""

from __future__ import annotations

from pathlib import Path

from stream_ad.artefact import default_model_dir, load_model, read_manifest, serving_settings
from stream_ad.commands.errors import CommandError
from stream_ad.commands.fit import fit_and_save
from stream_ad.data import LabelledImages, MVTecCategory, folder_test_set
from stream_ad.evaluation import evaluate as evaluate_model
from stream_ad.settings import Settings


def labelled_images_for(
    settings: Settings, good: Path | None, defects: Path | None, masks: Path | None
) -> LabelledImages:
    """The plain folders when given, else data.root's test/ (and ground_truth/)."""
    if good is None and defects is None:
        if masks is not None:
            raise CommandError("eval --masks needs --good and --defects")
        return MVTecCategory(settings.data.root).labelled_images()
    if good is None or defects is None:
        raise CommandError("eval takes --good and --defects together (good and defective test images)")
    return folder_test_set(good, defects, masks)


def evaluate(
    settings: Settings,
    *,
    model: Path | None = None,
    json_out: Path | None = None,
    good: Path | None = None,
    defects: Path | None = None,
    masks: Path | None = None,
) -> int:
    if model is None and (good is not None or defects is not None):
        raise CommandError("eval --good/--defects needs --model: a model fitted with `stream-ad fit --good DIR`")
    if model is not None:
        settings = serving_settings(model, settings)  # the artefact's own data.root and method unless given
    images = labelled_images_for(settings, good, defects, masks)  # a wrong folder is named before any fitting
    if model is not None:
        fitted = load_model(model, settings)
        model_dir = model
    else:
        model_dir = default_model_dir(settings)
        fitted = fit_and_save(settings, model_dir)
    out_json = json_out or model_dir / "evaluation.json"
    out_html = out_json.with_suffix(".html")
    manifest = read_manifest(model_dir)
    report = evaluate_model(fitted, images, out_json, html_out=out_html, threshold=manifest.threshold_value,
                            pixel_threshold=manifest.pixel_threshold_value)
    print(f"\n{images.name} ({settings.scorer.method}, {report.extra['test_images']} test images)")
    print(report.table())
    alarms = report.extra["false_alarms_at_threshold"]
    if alarms is not None:
        print(f"at the calibrated threshold {report.extra['threshold']:.4g}: recall "
              f"{report.extra['recall']['overall']['at_threshold']:.3f}, {alarms['above_threshold']} false alarms on "
              f"{alarms['good_images']} good images")
    print(f"report: {out_json}")
    print(f"pictures: {out_html}")
    return 0
