"""benchmarks.tune_agreement on a real PIPED category: both choices are what tune's ranking makes of the same fits,
the figures it reports are those candidates', and it counts the real defects it sampled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PIPED, SHARED

CATEGORY = PIPED / "PA_BRG03_TL"


def test_both_choices_and_their_real_figures(tmp_path: Path) -> None:
    config = tmp_path / "agree.yaml"
    config.write_text(f"shared_dir: {SHARED}\nruntime: {{device: cpu, threads: 2, batch_size: 8, accelerate: eager}}\n")
    out = tmp_path / "agree.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    run = subprocess.run([sys.executable, "-m", "benchmarks.tune_agreement", "-c", str(config), str(CATEGORY),
                          "--goods", "16", "--defects", "10", "--candidates", "4", "--synthetic-kinds", "scratch",
                          "--json", str(out)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    [row] = json.loads(out.read_text())
    assert (row["fitted"], row["held_out_good"], row["real_defects"]) == (12, 4, 10)
    real = row["real_image_auroc"]
    assert len(real) == len(row["synthetic_image_auroc"]) == row["candidates"] == 4  # the first 4 of the grid
    assert row["real_auroc_default"] == real[0] and row["real_auroc_best"] == max(real)
    assert row["real_auroc_of_synthetic_pick"] in real and row["agree"] == (row["synthetic_pick"] == row["real_pick"])
    assert row["synthetic_defects"] == "24 synthetic defects (scratch)"
    assert set(row["ranked_on"]) == {"synthetic", "real"}
    assert all(v in ("image AUROC", "pixel AUROC") for v in row["ranked_on"].values())
    assert row["real_pixel_auroc_default"] <= row["real_pixel_auroc_best"] <= 1.0
    assert f"{CATEGORY.name}, ranked on 10 labelled defects" in run.stdout and "agree in" in run.stdout


def test_an_unknown_synthetic_kind_is_refused_by_name_before_any_fitting() -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks.tune_agreement", str(CATEGORY), "--synthetic-kinds",
                          "scratch,dent"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert run.returncode == 2
    assert "--synthetic-kinds: synthetic defect kinds: 'dent'; the kinds are cut_paste, scratch, perlin" in run.stderr
