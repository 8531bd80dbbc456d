"""The configurations `stream-ad tune` tries: a geometry (resize, letterbox, aspect, tile) and input size, and the
method: PatchCore at a coreset ratio, or PaDiM (a Gaussian per position: for parts in a fixture), chosen from the
frames' size as the README's "Resize, letterbox, aspect or tile?" advises; a VAE's reconstruction error (a method
that learns the parts' look from scratch, for textures ImageNet features fit badly); PatchCore and the VAE together;
and, at the settings' own configuration, the other frame score and, for a backbone whose node names tune knows, other
feature taps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from stream_ad.geometry import Geometry, cut_size, tile_grid
from stream_ad.scorers.ensemble.patchcore_vae import PatchCoreVAEParams
from stream_ad.scorers.patchcore.model import PatchCoreParams
from stream_ad.scorers.reconstruction.vae_scorer import VAEParams
from stream_ad.settings import MAP_SCORE_FRACTION, Settings, settings_from_record

CORESET_RATIOS = (0.01, 0.1)
# Tile mode has 16 times the patches of resize 224 on a 640 x 640 frame: smaller ratios keep its bank in the
# thousands to tens of thousands (README: 0.002 of 300 such frames, 7,527 patches, loses nothing).
TILE_CORESET_RATIOS = (0.002, 0.01)
# Tile mode's coreset is chosen among a uniform sample of at most this many patches (README: 250000 fits 300
# frames of 640 x 640 in about two minutes on 2 cores at no loss of accuracy).
TILE_CORESET_POOL = 250_000
TILE = 224
SQUARE = 1.1  # frames whose sides differ by less than this factor letterbox as they resize: letterbox is left out
# Aspect mode (the short side at 224 or 320, the long side in tiles of that size) for frames far from square,
# PatchCore at the default ratio only: its bank is already the frame's aspect ratio times resize's. On magnetic_tile
# stacked into 500 x 1250 strips it led every other geometry (README, "Resize, letterbox, aspect or tile?").
ASPECT_SIZES = (224, 320)
# The tap sets tune tries, by backbone (torchvision node names): the built-in default's first. A backbone not listed
# keeps the settings' own: other networks' node names (and what their stages are worth) are not known here.
# MobileNetV2's other set adds the stride-4 stage (features.3, 24 channels) resampled onto features.6's stride-8
# grid (PatchCore's grid is the first tap's: as many patches, no deeper network, a fit no slower). Measured on the 13
# shared sets (README, "Tuning to a line"): pixel AUROC up on 11 and level on 2, PRO up on 12, the worst image AUROC
# 0.874 -> 0.915, but image AUROC down on magnetic_tile (-0.013, beyond noise) and bsdata (-0.012): a candidate for
# the guard, not the default.
# Adding stride 32 (features.16) lost PRO on all 13, features.10 gained nothing on average: not tried.
TAP_SETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "mobilenet_v2": (("features.6", "features.13"), ("features.6", "features.3", "features.13")),
}
# The VAE candidate: its reconstruction error (mode "reconstruction": one forward pass, 2-3 ms a frame, exportable;
# the projection's 20 gradient steps a frame are too slow for tune to try) at 128 px, the size its README figures
# were measured at. It trains for the VAE's own 30 epochs, held between RECONSTRUCTION_STEPS optimiser steps (batches
# of 16): at least 120, the 60 epochs its PIPED figures were measured with on 24 images (600 steps there lost image
# AUROC on PA_BRG03_TL, 0.885 -> 0.776 on real defects: it learns the few images too well), and at most 600, so that
# on a line of thousands of good images its fit stays within a few minutes on 2 cores. On PIPED's paper textures it
# localised far better than PatchCore, on magnetic_tile far worse (README, "Reconstruction methods"): the guard
# decides per line.
RECONSTRUCTION_SIZE = 128
RECONSTRUCTION_STEPS = (120, 600)
# PatchCore and the VAE, their maps summed on one scale (stream_ad.scorers.ensemble): PatchCore at resize 224 and
# the default ratio, the VAE at its own 128 px and the reconstruction candidate's epochs. Tried only on the line's own
# labelled defects: on synthetic ones it was chosen where real defects ranked it below the default (bsdata: synthetic
# pixel AUROC +0.016 beyond noise, real -0.042; README, "PatchCore and the VAE together").
ENSEMBLE = "patchcore_vae"
# Candidate.frame_score for the method's own image score (preprocess.map_score_fraction null). The other rule, the
# mean of the map's top MAP_SCORE_FRACTION, is the settings' default; tune tries whichever rule the settings do not
# use, at the default's configuration (README, "The frame score").
METHOD_SCORE = "method"


@dataclass(frozen=True)
class Candidate:
    mode: Literal["resize", "letterbox", "tile", "aspect"]
    size: int  # image_size, or tile_size in tile mode
    coreset_ratio: float | None  # PatchCore's; None for a method without a memory bank
    method: str = "patchcore"
    layers: tuple[str, ...] | None = None  # backbone.layers; None: the settings' own
    # preprocess.map_score_fraction: a fraction, or METHOD_SCORE (null); None: the settings' own
    frame_score: float | Literal["method"] | None = None
    epochs: int | None = None  # a trained method's (the VAE's, alone or in the ensemble); None: it trains none

    @property
    def name(self) -> str:
        ratio = "" if self.coreset_ratio is None else f" ratio {self.coreset_ratio:g}"
        epochs = "" if self.epochs is None else f" reconstruction {self.epochs} epochs"
        taps = "" if self.layers is None else f" taps {'+'.join(self.layers)}"
        return f"{self.method} {self.mode} {self.size}{ratio}{epochs}{taps}{self._score_name()}"

    def _score_name(self) -> str:
        if self.frame_score is None:
            return ""
        return " score method's own" if self.frame_score == METHOD_SCORE else f" score map top {self.frame_score:.0%}"

    def overrides(self) -> dict[str, Any]:
        """The settings this candidate sets: preprocess and scorer, backbone.layers where it names taps, and
        preprocess.map_score_fraction where it names a frame score."""
        size_key = "tile_size" if self.mode == "tile" else "image_size"
        params: dict[str, Any] = {} if self.coreset_ratio is None else {"coreset_ratio": self.coreset_ratio}
        if self.mode == "tile" and self.method == "patchcore":
            params["coreset_pool"] = TILE_CORESET_POOL
        if self.epochs is not None:
            params |= {"vae_epochs": self.epochs} if self.method == ENSEMBLE else {
                "mode": "reconstruction", "epochs": self.epochs}
        taps = {} if self.layers is None else {"backbone": {"layers": list(self.layers)}}
        score = {} if self.frame_score is None else {
            "map_score_fraction": None if self.frame_score == METHOD_SCORE else self.frame_score}
        return {"preprocess": {"mode": self.mode, size_key: self.size, **score},
                "scorer": {"method": self.method, "params": params}, **taps}

    def input_pixels(self, height: int, width: int, tile_overlap: float) -> int:
        """Backbone input pixels per frame of that size: what fitting and scoring it cost, roughly."""
        if self.mode in ("resize", "letterbox"):
            return self.size * self.size
        geometry = Geometry(self.mode, self.size, self.size, tile_overlap, 0)
        return len(tile_grid(0, (height, width), cut_size(geometry, height, width), geometry)) * self.size**2


def reconstruction_epochs(fit_images: int) -> int:
    """The VAE's own epochs on `fit_images` good images, held within RECONSTRUCTION_STEPS (at least one)."""
    fields = VAEParams.model_fields
    batches = -(-fit_images // fields["batch_size"].default)
    fewest, most = RECONSTRUCTION_STEPS
    return min(max(fields["epochs"].default, -(-fewest // batches)), max(1, most // batches))


def reconstruction_candidate(fit_images: int) -> Candidate:
    """The VAE at RECONSTRUCTION_SIZE, trained on `fit_images` good images (reconstruction_epochs)."""
    return Candidate("resize", RECONSTRUCTION_SIZE, None, "vae", epochs=reconstruction_epochs(fit_images))


def ensemble_candidate(fit_images: int) -> Candidate:
    """PatchCore at resize 224 and the default ratio with the VAE trained as reconstruction_candidate's."""
    return Candidate("resize", 224, CORESET_RATIOS[0], ENSEMBLE, epochs=reconstruction_epochs(fit_images))


def candidate_grid(height: int, width: int, fit_images: int, *, labelled: bool) -> list[Candidate]:
    """Cheapest first, so a short budget still tries the default: resize 224; letterbox 224 and 320 for frames far
    from square, else resize 320; each with PatchCore at CORESET_RATIOS and with PaDiM (its fit is one pass of
    sums, cheaper than a coreset); aspect 224 and 320 for frames far from square, PatchCore at the default ratio;
    tile 224 at native size, PatchCore at TILE_CORESET_RATIOS, when a side is at least twice the tile (no PaDiM in
    either: a position inside a tile is no position on the part); last the VAE's reconstruction, trained on the
    `fit_images` good images (the geometries' budget first: on large frames with small defects, where tile mode
    wins, a 128 px reconstruction loses them), and where the candidates are ranked on `labelled` defects (the line's
    own, not synthetic ones: ENSEMBLE says why), the VAE with PatchCore."""
    square = max(height, width) < SQUARE * min(height, width)
    geometries: list[tuple[Literal["resize", "letterbox", "tile"], int]] = [("resize", 224)]
    geometries += [("resize", 320)] if square else [("letterbox", 224), ("letterbox", 320)]
    grid = [Candidate(mode, size, ratio) for mode, size in geometries for ratio in CORESET_RATIOS]
    grid += [Candidate(mode, size, None, "padim") for mode, size in geometries]
    if not square:
        grid += [Candidate("aspect", size, CORESET_RATIOS[0]) for size in ASPECT_SIZES]
    if max(height, width) >= 2 * TILE:
        grid += [Candidate("tile", TILE, ratio) for ratio in TILE_CORESET_RATIOS]
    return grid + [reconstruction_candidate(fit_images)] + ([ensemble_candidate(fit_images)] if labelled else [])


def default_candidate(settings: Settings) -> Candidate:
    """What the settings fit without tuning: their geometry, size and taps, and PaDiM where they name it, the VAE
    where they name it in mode "reconstruction" (with their epochs), else PatchCore at their coreset ratio
    (PatchCore's own default where they set none, or where they name a method tune does not try), with the VAE
    (their vae_epochs) where they name patchcore_vae."""
    p = settings.preprocess
    size = p.tile_size if p.mode == "tile" else p.image_size
    layers = tuple(settings.backbone.layers)
    score = METHOD_SCORE if p.map_score_fraction is None else p.map_score_fraction
    params = settings.scorer.params  # an unvalidated mapping; a STREAM_AD_* variable gives a string
    if settings.scorer.method == "padim":
        return Candidate(p.mode, size, None, "padim", layers=layers, frame_score=score)
    if settings.scorer.method == "vae" and params.get("mode") == "reconstruction":
        epochs = int(params.get("epochs", VAEParams.model_fields["epochs"].default))
        return Candidate(p.mode, size, None, "vae", layers, score, epochs)
    ratio = PatchCoreParams.model_fields["coreset_ratio"].default
    if settings.scorer.method in ("patchcore", ENSEMBLE):
        ratio = float(params.get("coreset_ratio", ratio))
    if settings.scorer.method == ENSEMBLE:
        epochs = int(params.get("vae_epochs", PatchCoreVAEParams.model_fields["vae_epochs"].default))
        return Candidate(p.mode, size, ratio, ENSEMBLE, layers, score, epochs)
    return Candidate(p.mode, size, ratio, layers=layers, frame_score=score)


def tap_candidates(default: Candidate, backbone: str) -> list[Candidate]:
    """The default's configuration with each of the backbone's TAP_SETS but its own taps: one fit each, so only
    there (the taps' gain or loss measured alone, against the default at the same geometry and ratio). PatchCore
    only: the tap sets were measured with it, and PaDiM stacks taps on the finest one's grid, not the first's."""
    if default.method != "patchcore":
        return []
    return [replace(default, layers=taps) for taps in TAP_SETS.get(backbone, ()) if taps != default.layers]


def score_candidates(default: Candidate) -> list[Candidate]:
    """The default's configuration with the other frame score (the map's top MAP_SCORE_FRACTION, or the method's
    own): one fit, the score rule's gain or loss measured alone."""
    other = MAP_SCORE_FRACTION if default.frame_score == METHOD_SCORE else METHOD_SCORE
    return [replace(default, frame_score=other)]


def with_default(default: Candidate, grid: Sequence[Candidate]) -> list[Candidate]:
    """The default first (the first candidate always runs, and the others are measured against it), then the grid
    without it (a grid candidate with the settings' own taps or frame score, None, is the default where the rest is
    the same)."""
    return [default] + [c for c in grid if replace(c, layers=c.layers or default.layers,
                                                   frame_score=c.frame_score or default.frame_score) != default]


def line_grid(default: Candidate, backbone: str, height: int, width: int, fit_images: int, *,
              labelled: bool) -> list[Candidate]:
    """What tune tries on frames of that size, fitting on `fit_images` good images, ranked on `labelled` defects or
    synthetic ones: the default, the default with the backbone's other taps and with the other frame score (each as
    cheap as the default, so before the rest), then the candidate grid."""
    return with_default(default, tap_candidates(default, backbone) + score_candidates(default)
                        + candidate_grid(height, width, fit_images, labelled=labelled))


def taps_note(default: Candidate, backbone: str) -> str:
    """What tune does with the backbone's taps, for the log and the report."""
    if backbone not in TAP_SETS:
        return f"only the settings' own: tune knows the node names of {', '.join(TAP_SETS)}, not {backbone}"
    if default.method != "patchcore":
        return f"only the settings' own: other taps are tried with patchcore, not {default.method}"
    own = "+".join(default.layers or ())
    others = ["+".join(c.layers or ()) for c in tap_candidates(default, backbone)]
    return f"the settings' own ({own}), and {', '.join(others) or 'no others'} at the default's configuration"


def with_candidate(tree: dict[str, Any], candidate: Candidate) -> dict[str, Any]:
    """A settings mapping (a whole dump, or a user's YAML with only some keys) with the candidate's preprocessing,
    scorer and taps; the method's other params kept when it is the same method, the backbone's other keys kept."""
    overrides = candidate.overrides()
    scorer = tree.get("scorer", {})
    kept = scorer.get("params", {}) if scorer.get("method", candidate.method) == candidate.method else {}
    merged = {**tree, "preprocess": {**tree.get("preprocess", {}), **overrides["preprocess"]},
              "scorer": {**scorer, "method": candidate.method, "params": {**kept, **overrides["scorer"]["params"]}}}
    if "backbone" in overrides:
        merged["backbone"] = {**tree.get("backbone", {}), **overrides["backbone"]}
    return merged


def settings_for(base: Settings, candidate: Candidate) -> Settings:
    """`base` with the candidate's preprocessing, scorer and taps."""
    return settings_from_record(with_candidate(base.model_dump(mode="json"), candidate))
