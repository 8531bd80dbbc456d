"""What `stream-ad tune` scores candidates on: held-out good images plus defects, the line's labelled ones when it
has any, else synthetic ones made from the held-out good images (stream_ad.data.synthetic). Held in memory: a few
hundred frames, read once and scored by every candidate."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_ad.data import Sample, read_image, read_mask
from stream_ad.data.synthetic import KINDS, synthetic_defects
from stream_ad.tuning.guard import SATURATED

log = logging.getLogger(__name__)

MIN_SYNTHETIC = 24  # synthetic defects at least, whatever few good images are held out
FEW_DEFECTS = 5  # fewer labelled defects than this rank candidates on chance as much as on skill


@dataclass(frozen=True)
class ValidationSet:
    frames: tuple[np.ndarray, ...]  # RGB uint8, good and defective
    labels: tuple[int, ...]  # 0 good, 1 defective
    masks: tuple[np.ndarray, ...] | None  # bool, one per frame (all False for a good one); None: image AUROC only
    defects: str  # what the defects are, for the report
    synthetic: bool = False  # whether the defects are synthetic_defects' (else the line's labelled ones)

    @property
    def shape(self) -> tuple[int, int]:
        """The largest frame's (height, width): what the candidate grid is chosen for (where frames differ in
        size, tile mode is worth trying if any is large)."""
        height, width = max((f.shape[:2] for f in self.frames), key=lambda hw: hw[0] * hw[1])
        return height, width


def _good(paths: Sequence[Path], max_pixels: int) -> list[np.ndarray]:
    return [read_image(p, max_pixels) for p in paths]


def labelled_validation(good: Sequence[Path], defects: Sequence[Sample], source: str,
                        max_pixels: int) -> ValidationSet:
    """Held-out good images and labelled defective ones (from `source`, named in the report); pixel AUROC when
    every defect has a mask."""
    if len(defects) < FEW_DEFECTS:
        log.warning("only %d labelled defects in %s: the ranking rests on few images (5-20 are enough)",
                    len(defects), source)
    frames = _good(good, max_pixels) + [read_image(s.path, max_pixels) for s in defects]
    with_masks = all(s.mask_path is not None for s in defects)
    masks = None
    if with_masks:
        masks = tuple([np.zeros(f.shape[:2], bool) for f in frames[:len(good)]]
                      + [read_mask(s, f.shape[:2]) for s, f in zip(defects, frames[len(good):], strict=True)])
    labels = (0,) * len(good) + (1,) * len(defects)
    return ValidationSet(tuple(frames), labels, masks, f"{len(defects)} labelled defects ({source})")


def synthetic_validation(good: Sequence[Path], seed: int, max_pixels: int,
                         kinds: Sequence[str] = KINDS) -> ValidationSet:
    """Held-out good images and as many synthetic defects of `kinds` made from them (at least MIN_SYNTHETIC), with
    masks."""
    frames = _good(good, max_pixels)
    made = synthetic_defects(frames, max(len(frames), MIN_SYNTHETIC), seed, kinds)
    masks = [np.zeros(f.shape[:2], bool) for f in frames] + [d.mask for d in made]
    names = ", ".join(sorted({d.kind for d in made}))
    return ValidationSet(tuple(frames + [d.image for d in made]), (0,) * len(frames) + (1,) * len(made),
                         tuple(masks), f"{len(made)} synthetic defects ({names})", synthetic=True)


def saturation_note(validation: ValidationSet, default_auroc: float, kept: bool) -> str | None:
    """What to tell the engineer when the default separates the synthetic defects almost perfectly (SATURATED): the
    candidates were then ranked on pixel AUROC where the defects have masks (stream_ad.tuning.guard), which real
    defects may rank otherwise, and labelled ones would say more. Synthetic defects that easy told image-AUROC
    ranking nothing: on magnetic_tile stacked into 500 x 1250 strips the default scored 0.9988 on them and 0.691 on
    real ones, where tile 224 scored 0.795 and letterbox 320 0.775 (README, "Tuning to a line"); on bsdata 0.997
    against 0.887."""
    if not (validation.synthetic and default_auroc >= SATURATED):
        return None
    ranked = ("the candidates were ranked on pixel AUROC instead" if validation.masks is not None
              else "no candidate could show a gain")
    outcome = "the default was kept" if kept else "the default was left"
    return (f"the synthetic defects are too easy on these images to tell the candidates apart by image AUROC (the "
            f"default's is {default_auroc:.4f}), so {ranked}, and {outcome}: real defects may rank them otherwise; "
            f"give tune 5-20 labelled defect images (--defects DIR, a subfolder per defect type) to judge on them")
