"""`python -m benchmarks.tune_agreement CATEGORY...`: how often `stream-ad tune` on synthetic defects picks what
the category's real defects would have picked.

Per category (an MVTec-AD-layout folder): the good images (at most --goods, a seeded sample) split as tune splits
them; each candidate of tune's grid fitted once and scored on two validation sets, held-out good images plus
(a) synthetic defects made from them, (b) the real test defects (at most --defects, a seeded sample, with masks);
each set ranked as tune ranks. Printed and written as JSON: both choices, whether they agree, the real-defect image
AUROC of the synthetic choice beside the best one's (what picking on synthetic defects costs), the Spearman
correlation of the candidates' image AUROCs, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from stream_ad.calibration.holdout import split_good
from stream_ad.data import MVTecCategory
from stream_ad.settings import load_settings
from stream_ad.tuning import Trial, candidate_grid, labelled_validation, rank, settings_for, synthetic_validation
from stream_ad.tuning.report import table
from stream_ad.tuning.search import figures_on, fit_candidate


def _chosen(trials: list[Trial]) -> int:
    return next(i for i, o in enumerate(rank(trials)) if o.chosen)


def _spearman(a: list[float], b: list[float]) -> float | None:
    """Rank correlation; None where either side is constant (every candidate at AUROC 1.0, say)."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def measure(root: Path, goods: int, defects: int, seed: int, config: Path | None) -> dict[str, Any]:
    settings = load_settings(config, data={"root": str(root)})
    category = MVTecCategory(root)
    rng = np.random.default_rng(seed)
    good = sorted(s.path for s in category.train())
    good = sorted(good[i] for i in rng.permutation(len(good))[:goods])
    real = category.defective()
    real = [real[i] for i in sorted(rng.permutation(len(real))[:defects])]
    split = split_good(good, settings.calibration)
    max_pixels = settings.pipeline.source.max_image_pixels
    sets = {"synthetic": synthetic_validation(split.held_out, settings.calibration.seed, max_pixels),
            "real": labelled_validation(split.held_out, real, f"{root}/test", max_pixels)}
    grid = candidate_grid(*sets["real"].shape)
    trials: dict[str, list[Trial]] = {name: [] for name in sets}
    load = [os.getloadavg()[0]]
    for candidate in grid:
        model, fit_s = fit_candidate(settings_for(settings, candidate), split.fit, max_pixels)
        for name, validation in sets.items():
            trials[name].append(Trial(candidate, figures_on(model, validation, fit_s)))
    load.append(os.getloadavg()[0])
    picked = {name: _chosen(t) for name, t in trials.items()}
    real_auroc = [t.figures.image_auroc for t in trials["real"] if t.figures is not None]
    synthetic_auroc = [t.figures.image_auroc for t in trials["synthetic"] if t.figures is not None]
    for name, t in trials.items():
        print(f"\n{root.name}, ranked on {sets[name].defects}:\n{table(rank(t))}")
    return {
        "category": root.name, "fitted": len(split.fit), "held_out_good": len(split.held_out),
        "real_defects": len(real), "synthetic_defects": sets["synthetic"].defects, "candidates": len(grid),
        "synthetic_pick": grid[picked["synthetic"]].name, "real_pick": grid[picked["real"]].name,
        "agree": picked["synthetic"] == picked["real"],
        "real_auroc_of_synthetic_pick": real_auroc[picked["synthetic"]], "real_auroc_best": max(real_auroc),
        "real_auroc_worst": min(real_auroc),
        "spearman_image_auroc": _spearman(synthetic_auroc, real_auroc),
        "synthetic_image_auroc": synthetic_auroc, "real_image_auroc": real_auroc, "load_avg_start_end": load,
    }


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune_agreement", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("categories", type=Path, nargs="+", help="MVTec-AD-layout category folders")
    parser.add_argument("-c", "--config", type=Path, help="settings YAML (runtime, calibration hold-out)")
    parser.add_argument("--goods", type=int, default=120, help="good images sampled per category (default 120)")
    parser.add_argument("--defects", type=int, default=40, help="real defects sampled per category (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("tune_agreement.json"))
    args = parser.parse_args()
    rows = [measure(root, args.goods, args.defects, args.seed, args.config) for root in args.categories]
    print("\ncategory       agree  synthetic pick (its real image AUROC)       real pick (its real image AUROC)"
          "            spearman  load")
    for r in rows:
        load = "-".join(f"{v:.1f}" for v in r["load_avg_start_end"])
        print(f"{r['category']:<15}{'yes' if r['agree'] else 'no':<7}"
              f"{r['synthetic_pick'] + ' (' + format(r['real_auroc_of_synthetic_pick'], '.4f') + ')':<44}"
              f"{r['real_pick'] + ' (' + format(r['real_auroc_best'], '.4f') + ')':<44}"
              f"{_rho(r['spearman_image_auroc']):>8}  {load}")
    print(f"agree in {sum(r['agree'] for r in rows)} of {len(rows)}")
    args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
