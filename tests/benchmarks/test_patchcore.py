"""`python -m benchmarks patchcore`: the torchvision -> timm weight mapping (only where timm is installed) and a
stream_ad-only run.

Neither test needs anomalib; the peer itself is exercised by `python -m benchmarks patchcore` with the [bench] extra
installed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks.__main__ import build_parser, options_of
from benchmarks.patchcore import PatchcoreBenchOptions, run_bench
from stream_ad.data import MVTecCategory, Preprocessor, read_image
from stream_ad.scorers import scorer_params
from stream_ad.settings import load_settings
from tests.conftest import PIPED

CATEGORY = PIPED / "PA_BDP01_TL"


def test_mapped_timm_mobilenet_reproduces_torchvision_logits(shared: Path) -> None:
    timm = pytest.importorskip("timm")
    from benchmarks.timm_mobilenet import (
        TIMM_NAME,
        WeightMappingError,
        check_logits,
        logits_error,
        timm_from_torchvision,
        timm_tap,
    )

    settings = load_settings(data={"root": str(CATEGORY)})
    state = torch.load(settings.backbone.weights_path, map_location="cpu", weights_only=True)
    sample = MVTecCategory(CATEGORY).test()[-1]
    images = Preprocessor(settings.preprocess, settings.backbone.mean, settings.backbone.std)([read_image(sample.path)])

    mapped = timm_from_torchvision(state)
    assert logits_error(state, mapped, images.inputs) < 1e-4
    assert [timm_tap(layer, mapped) for layer in settings.backbone.layers] == ["blocks.2", "blocks.4"]
    # The check must notice a model that does not hold these weights.
    with pytest.raises(WeightMappingError):
        check_logits(state, timm.create_model(TIMM_NAME, pretrained=False), images.inputs, 1e-3)


def test_bench_without_peer_on_a_small_category(tmp_path: Path, shared: Path) -> None:
    settings = load_settings(data={"root": str(CATEGORY)}, output_dir=str(tmp_path))
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(
        ["patchcore", "--skip-peer", "--limit-train", "8", "--limit-test", "24", "--batch-sizes", "1,8", "--json",
         str(out)]
    )
    assert run_bench(settings, options_of(args, PatchcoreBenchOptions)) == 0

    report = json.loads(out.read_text())
    assert report["train_images"] == 8 and report["test_images"] == 24
    assert set(report["figures"]) == {"stream_ad", "stream_ad_default"}
    assert report["ratio_stream_ad_over_anomalib"] is None
    for name, f in report["figures"].items():
        for metric in ("image_auroc", "pixel_auroc", "pro"):
            assert 0.5 < f[metric] <= 1.0, (name, metric, f[metric])
        assert f["fit_s"] > 0 and f["images_per_s_b1"] > 0 and f["images_per_s_b8"] > 0
        assert 0 < f["p50_ms_b1"] <= f["p95_ms_b1"]
        assert f["peak_rss_mb"] >= f["rss_before_fit_mb"] > 0
    # 8 images of 28 x 28 patches: the side-by-side keeps --ratio of them, the default its own coreset_ratio.
    patches = 8 * 28 * 28
    assert report["figures"]["stream_ad"]["memory_bank"] == math.ceil(0.0025 * patches)
    default_ratio = scorer_params(settings.scorer).coreset_ratio
    assert report["figures"]["stream_ad_default"]["memory_bank"] == math.ceil(default_ratio * patches)
