"""`python -m benchmarks.tune_agreement CATEGORY...`: how often `stream-ad tune` on synthetic defects picks what
the category's real defects would have picked.

Per category (an MVTec-AD-layout folder): the good images (at most --goods, a seeded sample) split as tune splits
them; each candidate of tune's grid fitted once and scored on two validation sets, held-out good images plus
(a) synthetic defects made from them, (b) the real test defects (at most --defects, a seeded sample, with masks),
each ranking the grid tune tries on such defects (on synthetic ones, without those it tries only on labelled ones);
each set ranked as tune ranks (the default, first, kept unless a candidate beats it beyond noise, on image AUROC or,
where the default's saturates, on pixel AUROC: which one per set is in the JSON). Printed and written
as JSON: both choices, whether they agree, the real-defect image (and pixel) AUROC of tune's choice beside the
default's, the unguarded choice's (the highest synthetic image AUROC) and the best one's; the mean and the worst of
tune's choice against the default over the categories; the Spearman correlation of the candidates' image AUROCs,
and the load average.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from benchmarks.figures import categories_parser
from stream_ad.calibration.holdout import split_good
from stream_ad.data import MVTecCategory
from stream_ad.data.synthetic import KINDS, checked_kinds
from stream_ad.settings import load_settings
from stream_ad.tuning import (
    Trial,
    default_candidate,
    labelled_validation,
    line_grid,
    rank,
    settings_for,
    synthetic_validation,
)
from stream_ad.tuning.report import table
from stream_ad.tuning.search import figures_on, fit_candidate


def _spearman(a: list[float], b: list[float]) -> float | None:
    """Rank correlation; None where either side is constant (every candidate at AUROC 1.0, say)."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def measure(root: Path, goods: int, defects: int, seed: int, config: Path | None,
            confidence: float, candidates: int | None = None,
            kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """One category's row; `candidates`: only the first that many of tune's grid (None: all); `kinds`: the
    synthetic defects' kinds."""
    settings = load_settings(config, data={"root": str(root)})
    category = MVTecCategory(root)
    rng = np.random.default_rng(seed)
    good = sorted(s.path for s in category.train())
    good = sorted(good[i] for i in rng.permutation(len(good))[:goods])
    real = category.defective()
    real = [real[i] for i in sorted(rng.permutation(len(real))[:defects])]
    split = split_good(good, settings.calibration)
    max_pixels = settings.pipeline.source.max_image_pixels
    sets = {"synthetic": synthetic_validation(split.held_out, settings.calibration.seed, max_pixels, kinds),
            "real": labelled_validation(split.held_out, real, f"{root}/test", max_pixels)}
    # Each set ranks the grid tune tries on it: the synthetic set's is the labelled set's but its labelled-only
    # candidates (line_grid), so every candidate is fitted once and scored on the sets whose grid holds it.
    grids = {name: line_grid(default_candidate(settings), settings.backbone.name, *sets["real"].shape,
                             len(split.fit), labelled=not validation.synthetic)[:candidates]
             for name, validation in sets.items()}
    grid = grids["real"]
    trials: dict[str, list[Trial]] = {name: [] for name in sets}
    load = [os.getloadavg()[0]]
    for candidate in tqdm(grid, desc=root.name, unit="candidate"):
        model, fit_s = fit_candidate(settings_for(settings, candidate), split.fit, max_pixels)
        for name, validation in sets.items():
            if candidate in grids[name]:
                trials[name].append(Trial(candidate, figures_on(model, validation, fit_s)))
    load.append(os.getloadavg()[0])
    ranked = {name: rank(t, sets[name].labels, confidence, settings.runtime.seed) for name, t in trials.items()}
    picked = {name: next(o.trial.candidate for o in r if o.chosen) for name, r in ranked.items()}
    on_real = {t.candidate: t.figures for t in trials["real"] if t.figures is not None}
    synthetic = {t.candidate: t.figures.image_auroc for t in trials["synthetic"] if t.figures is not None}
    real_auroc = [f.image_auroc for f in on_real.values()]
    # What the ranking before the guard picked: the highest synthetic image AUROC (the first of equals).
    unguarded = max(synthetic, key=lambda c: synthetic[c])
    for name, r in ranked.items():
        print(f"\n{root.name}, ranked on {sets[name].defects}:\n{table(r)}")
    pick = picked["synthetic"]
    return {
        "category": root.name, "fitted": len(split.fit), "held_out_good": len(split.held_out),
        "real_defects": len(real), "synthetic_defects": sets["synthetic"].defects, "candidates": len(grid),
        "synthetic_candidates": len(grids["synthetic"]),
        "default": grid[0].name, "synthetic_pick": pick.name, "real_pick": picked["real"].name,
        "agree": pick == picked["real"], "unguarded_pick": unguarded.name,
        "real_auroc_default": real_auroc[0], "real_auroc_of_synthetic_pick": on_real[pick].image_auroc,
        "real_auroc_of_unguarded_pick": on_real[unguarded].image_auroc, "real_auroc_best": max(real_auroc),
        "real_pixel_auroc_default": on_real[grid[0]].pixel_auroc,
        "real_pixel_auroc_of_synthetic_pick": on_real[pick].pixel_auroc,
        "real_pixel_auroc_best": max((f.pixel_auroc for f in on_real.values() if f.pixel_auroc is not None),
                                     default=None),
        "ranked_on": {name: r[0].ranked_on.value for name, r in ranked.items()},
        # over the candidates both sets ranked, in the grid's order
        "spearman_image_auroc": _spearman(list(synthetic.values()), [on_real[c].image_auroc for c in synthetic]),
        "synthetic_image_auroc": list(synthetic.values()), "real_image_auroc": real_auroc,
        "load_avg_start_end": load,
    }


def _rho(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _summary(rows: list[dict[str, Any]], key: str, what: str) -> str:
    """Mean and worst of tune's pick's real AUROC against the default's, over the rows that have `key`."""
    have = [r for r in rows if r[f"{key}_default"] is not None]
    diffs = [r[f"{key}_of_synthetic_pick"] - r[f"{key}_default"] for r in have]
    worst = int(np.argmin(diffs))
    return (f"{what} over {len(have)} sets: default mean {np.mean([r[f'{key}_default'] for r in have]):.4f}, "
            f"tune's pick mean {np.mean([r[f'{key}_of_synthetic_pick'] for r in have]):.4f}; worst pick minus default "
            f"{diffs[worst]:+.4f} ({have[worst]['category']})")


def main() -> None:
    parser = categories_parser("python -m benchmarks.tune_agreement", __doc__,
                               "settings YAML (runtime, calibration hold-out)")
    parser.add_argument("--goods", type=int, default=120, help="good images sampled per category (default 120)")
    parser.add_argument("--defects", type=int, default=40, help="real defects sampled per category (default 40)")
    parser.add_argument("--confidence", type=float, default=0.95, help="tune's --confidence (default 0.95)")
    parser.add_argument("--candidates", type=int, help="only the first N candidates of tune's grid, the default first "
                        "(default: all); a quick check")
    parser.add_argument("--synthetic-kinds", default=",".join(KINDS), metavar="KIND[,KIND]",
                        help=f"the synthetic defects' kinds, as tune's option (default: all, {','.join(KINDS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("tune_agreement.json"))
    args = parser.parse_args()
    if args.candidates is not None and args.candidates < 1:
        parser.error(f"--candidates must be at least 1 (the default), got {args.candidates}")
    try:
        kinds = checked_kinds([k.strip() for k in args.synthetic_kinds.split(",") if k.strip()])
    except ValueError as exc:
        parser.error(f"--synthetic-kinds: {exc}")
    rows = []
    for root in args.categories:
        rows.append(measure(root, args.goods, args.defects, args.seed, args.config, args.confidence, args.candidates,
                            kinds))
        args.json.write_text(json.dumps(rows, indent=2) + "\n")  # after each: a long run's figures survive a stop
    print("\ncategory       agree  tune's pick on synthetic defects  real pick (guarded)               "
          "real image AUROC: default / pick / unguarded pick / best  pixel: default / pick  spearman  load")
    for r in rows:
        load = "-".join(f"{v:.1f}" for v in r["load_avg_start_end"])
        pixel = " / ".join("-" if v is None else f"{v:.4f}"
                           for v in (r["real_pixel_auroc_default"], r["real_pixel_auroc_of_synthetic_pick"]))
        print(f"{r['category']:<15}{'yes' if r['agree'] else 'no':<7}{r['synthetic_pick']:<34}{r['real_pick']:<34}"
              f"{r['real_auroc_default']:.4f} / {r['real_auroc_of_synthetic_pick']:.4f} / "
              f"{r['real_auroc_of_unguarded_pick']:.4f} / {r['real_auroc_best']:.4f}          {pixel:<21}"
              f"{_rho(r['spearman_image_auroc']):>8}  {load}")
    print(f"agree in {sum(r['agree'] for r in rows)} of {len(rows)}")
    print(_summary(rows, "real_auroc", "real image AUROC"))
    print(_summary(rows, "real_pixel_auroc", "real pixel AUROC"))


if __name__ == "__main__":
    main()
