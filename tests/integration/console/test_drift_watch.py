"""The drift watch on a running pipeline: good frames whose brightness drops step by step (the category's good test
images, darkened with numpy) raise the warning before the false-alarm rate over the watch's window (the last WINDOW
frames) crosses the calibrated bound."""

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
    verdicts = sorted(read_jsonl(run.output_dir / "verdicts.jsonl"), key=lambda v: v["frame_id"])
    per_step: dict[int, list[bool]] = defaultdict(list)  # darkening -> alarm per frame, for the messages
    for v in verdicts:
        per_step[int(Path(v["path"]).name.split("_")[1])].append(v["verdict"] == "anomaly")
    rates = {delta: float(np.mean(alarms)) for delta, alarms in sorted(per_step.items())}
    # The false-alarm rate as the line sees it: over the last WINDOW frames, as the watch's own window.
    alarms = np.array([v["verdict"] == "anomaly" for v in verdicts], dtype=float)
    rolling = np.convolve(alarms, np.ones(WINDOW) / WINDOW)[WINDOW - 1:len(alarms)]
    above = np.flatnonzero(rolling > bound)
    assert above.size, f"the fading light never broke the bound {bound:.3f}: {rates}"  # else nothing was tested
    crossed_at = verdicts[WINDOW - 1 + int(above[0])]["frame_id"]
    warning = re.search(r"drift on camera cam0 from frame (\d+)", run.log.read_text())
    assert warning, f"no drift warning; false-alarm rate per darkening {rates}"
    warned_at = int(warning.group(1))
    first = verdicts[0]["frame_id"]
    assert warned_at >= first + WINDOW  # not before the window was full
    assert warned_at < crossed_at, (warned_at - first, crossed_at - first, rates, bound)
