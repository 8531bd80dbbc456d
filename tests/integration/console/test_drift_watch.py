"""The drift watch on a running pipeline: good frames whose brightness drops step by step (the category's good test
images, darkened with numpy) raise the warning before the false-alarm rate crosses the calibrated bound."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_ad.artefact import read_manifest
from tests.integration.conftest import CATEGORY, read_jsonl
from tests.integration.console.conftest import start_console_run

LEAD_IN = 3  # passes over the unshifted images before the light starts to fade
STEPS = (-5, -10, -15, -20, -25, -30, -35, -40)  # grey levels, 2 passes each
WINDOW = 40


@pytest.fixture(scope="module")
def fading_camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fading")
    good = [cv2.imread(str(p)) for p in sorted((CATEGORY / "test" / "good").glob("*.png"))]
    passes = [0] * LEAD_IN + [d for d in STEPS for _ in range(2)]
    for n, delta in enumerate(passes):
        for i, image in enumerate(good):  # the names sort in streaming order
            shifted = np.clip(image.astype(np.int16) + delta, 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{n:02d}_{-delta:02d}_{i:02d}.png"), shifted)
    return folder


def test_drift_is_seen_before_the_false_alarms_cross_the_bound(calibrated_model: Path, fading_camera: Path,
                                                                tmp_path: Path) -> None:
    run = start_console_run(tmp_path, calibrated_model, fading_camera, source={"fps": 12, "loop": False},
                            console={"drift": {"window": WINDOW, "significance": 0.01}})
    assert run.proc.wait(timeout=240) == 0, run.log.read_text()[-3000:]
    bound = read_manifest(calibrated_model).threshold["fpr_upper_bound"]
    per_step: dict[int, list[bool]] = defaultdict(list)  # darkening -> alarm per frame
    first_frame: dict[int, int] = {}
    for v in read_jsonl(run.output_dir / "verdicts.jsonl"):
        delta = int(Path(v["path"]).name.split("_")[1])
        per_step[delta].append(v["verdict"] == "anomaly")
        first_frame[delta] = min(first_frame.get(delta, v["frame_id"]), v["frame_id"])
    rates = {delta: float(np.mean(alarms)) for delta, alarms in sorted(per_step.items())}
    crossed = [delta for delta, rate in rates.items() if rate > bound]
    assert crossed, f"the fading light never broke the bound {bound:.3f}: {rates}"  # else nothing was tested
    warning = re.search(r"drift on camera cam0 from frame (\d+)", run.log.read_text())
    assert warning, f"no drift warning; false-alarm rate per darkening {rates}"
    warned_at = int(warning.group(1))
    assert warned_at >= first_frame[0] + WINDOW  # not before the window was full
    assert warned_at < first_frame[crossed[0]], (warned_at, first_frame, rates, bound)
