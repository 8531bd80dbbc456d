"""The candidate grid follows the frames' shape (the largest frame's) and the backbone (other taps for the one whose
node names tune knows); a candidate's keys merge into a whole settings dump or a user's partial YAML alike, and give
settings that validate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_ad.backbones import load_backbone
from stream_ad.scorers import scorer_params
from stream_ad.scorers.patchcore.graph import patch_embedding
from stream_ad.settings import MAP_SCORE_FRACTION, load_settings
from stream_ad.tuning import (
    Candidate,
    ValidationSet,
    candidate_grid,
    default_candidate,
    line_grid,
    settings_for,
    tap_candidates,
    taps_note,
    with_candidate,
    with_default,
)
from stream_ad.tuning.candidates import (
    METHOD_SCORE,
    RECONSTRUCTION_SIZE,
    RECONSTRUCTION_STEPS,
    TAP_SETS,
    TILE_CORESET_POOL,
    TILE_CORESET_RATIOS,
    ensemble_candidate,
    reconstruction_candidate,
    score_candidates,
)

OWN = ("features.6", "features.13")  # the built-in taps
OTHER = ("features.6", "features.10", "features.13")  # another tap set
MAP = MAP_SCORE_FRACTION  # the default frame score
FIT = 96  # good images fitted on: 6 batches of 16 per VAE epoch


def geometries(height: int, width: int) -> list[tuple[str, int]]:
    """The frozen-backbone methods' geometries (the VAE's 128 px resize, alone or with PatchCore's 224 px, is the
    same on every frame)."""
    return sorted({(c.mode, c.size) for c in candidate_grid(height, width, FIT, labelled=True) if c.epochs is None})


@pytest.mark.parametrize(("height", "width", "expected"), [
    (128, 128, [("resize", 224), ("resize", 320)]),  # square: letterbox would be resize again
    (500, 1250, [("aspect", 224), ("aspect", 320), ("letterbox", 224), ("letterbox", 320), ("resize", 224),
                 ("tile", 224)]),
    (640, 640, [("resize", 224), ("resize", 320), ("tile", 224)]),
])
def test_the_grid_follows_the_frames_shape(height: int, width: int, expected: list[tuple[str, int]]) -> None:
    grid = candidate_grid(height, width, FIT, labelled=True)
    # last, the trained networks: the geometries' budget first, whatever the frames
    assert grid[-2:] == [reconstruction_candidate(FIT), ensemble_candidate(FIT)]
    # on synthetic defects the same but PatchCore with the VAE, which they favour where real defects do not
    assert candidate_grid(height, width, FIT, labelled=False) == grid[:-1]
    grid = grid[:-2]
    assert sorted({(c.mode, c.size) for c in grid}) == expected
    assert grid[0] == Candidate("resize", 224, 0.01)  # the cheapest first: a short budget still tries it
    flat = [g for g in expected if g[0] not in ("tile", "aspect")]
    # PatchCore at two ratios and PaDiM at each geometry but those cut into tiles; aspect at the default ratio only
    cut = 2 * (("tile", 224) in expected) + sum(mode == "aspect" for mode, _ in expected)
    assert len(set(grid)) == len(grid) == 3 * len(flat) + cut
    assert sorted((c.mode, c.size) for c in grid if c.method == "padim") == flat
    assert {c.coreset_ratio for c in grid if c.mode == "tile"} <= set(TILE_CORESET_RATIOS)
    assert {c.coreset_ratio for c in grid if c.mode == "aspect"} <= {0.01}


def test_a_tile_candidate_fits_on_a_pool_of_patches_and_counts_its_tiles() -> None:
    tile = Candidate("tile", 224, 0.01)
    assert tile.overrides()["scorer"]["params"]["coreset_pool"] == TILE_CORESET_POOL
    assert tile.input_pixels(640, 640, 0.25) == 16 * 224 * 224  # 4 x 4 tiles, as the README counts
    assert Candidate("letterbox", 320, 0.1).input_pixels(500, 1250, 0.25) == 320 * 320
    # aspect: 500 x 1250 at 224 is 224 x 560, three tiles along its width
    assert Candidate("aspect", 224, 0.01).input_pixels(500, 1250, 0.25) == 3 * 224 * 224


def test_a_candidate_merges_into_a_partial_tree_keeping_the_rest() -> None:
    tree = {"data": {"root": "${shared_dir}/x"}, "preprocess": {"pad_value": 114},
            "scorer": {"method": "patchcore", "params": {"k": 3}}}
    merged = with_candidate(tree, Candidate("letterbox", 320, 0.1))
    assert merged["data"] == tree["data"] and tree["preprocess"] == {"pad_value": 114}  # the input is not changed
    assert merged["preprocess"] == {"pad_value": 114, "mode": "letterbox", "image_size": 320}
    assert merged["scorer"] == {"method": "patchcore", "params": {"k": 3, "coreset_ratio": 0.1}}
    other = with_candidate({"scorer": {"method": "vae", "params": {"epochs": 2}}}, Candidate("resize", 224, 0.01))
    assert other["scorer"] == {"method": "patchcore", "params": {"coreset_ratio": 0.01}}  # vae's params dropped


def test_settings_for_a_candidate_validate_with_the_methods_params() -> None:
    settings = settings_for(load_settings(runtime={"threads": 2}), Candidate("tile", 224, 0.002))
    assert (settings.preprocess.mode, settings.preprocess.tile_size, settings.runtime.threads) == ("tile", 224, 2)
    params = scorer_params(settings.scorer)
    assert (params.coreset_ratio, params.coreset_pool) == (0.002, TILE_CORESET_POOL)
    padim = settings_for(load_settings(scorer={"method": "patchcore", "params": {"coreset_ratio": 0.1}}),
                         Candidate("letterbox", 320, None, "padim"))
    assert padim.scorer.method == "padim" and padim.preprocess.image_size == 320
    assert scorer_params(padim.scorer).d > 0  # no PatchCore key carried over: PaDiM's params validate
    assert Candidate("resize", 224, None, "padim").name == "padim resize 224"


@pytest.mark.parametrize(("fit_images", "epochs"), [(24, 60), (FIT, 30), (300, 30), (571, 16), (20000, 1)])
def test_the_vae_trains_its_own_epochs_within_a_bounded_number_of_steps(fit_images: int, epochs: int) -> None:
    """The VAE's 30 epochs at its batch of 16, raised to at least 120 steps (PIPED's 24 fitted images: 2 batches an
    epoch) and cut to at most 600 (a fit of about the same time on a line of thousands); at least one epoch."""
    vae = reconstruction_candidate(fit_images)
    assert (vae.method, vae.mode, vae.size, vae.coreset_ratio, vae.epochs) == (
        "vae", "resize", RECONSTRUCTION_SIZE, None, epochs)
    steps = epochs * -(-fit_images // 16)
    fewest, most = RECONSTRUCTION_STEPS
    assert steps <= most or epochs == 1
    assert steps >= fewest or epochs == 30


def test_the_vae_candidate_writes_its_mode_and_epochs_and_validates() -> None:
    vae = reconstruction_candidate(FIT)
    assert vae.name == "vae resize 128 reconstruction 30 epochs"
    assert vae.overrides()["scorer"] == {"method": "vae", "params": {"mode": "reconstruction", "epochs": 30}}
    settings = settings_for(load_settings(scorer={"method": "patchcore", "params": {"coreset_ratio": 0.1}}), vae)
    params = scorer_params(settings.scorer)  # no PatchCore key carried over: the VAE's params validate
    assert (settings.preprocess.image_size, params.mode, params.epochs) == (128, "reconstruction", 30)
    # A settings file naming the VAE in reconstruction mode is its own default, with its epochs and size.
    mine = load_settings(preprocess={"image_size": 128}, scorer={"method": "vae", "params": {
        "mode": "reconstruction", "epochs": "40"}})
    assert default_candidate(mine) == Candidate("resize", 128, None, "vae", OWN, MAP, 40)
    assert settings_for(mine, default_candidate(mine)).scorer.params["epochs"] == 40
    assert tap_candidates(default_candidate(mine), "mobilenet_v2") == []  # taps are PatchCore's


def test_the_ensemble_candidate_trains_the_vae_s_epochs_beside_patchcore_and_validates() -> None:
    both = ensemble_candidate(FIT)
    assert both == Candidate("resize", 224, 0.01, "patchcore_vae", epochs=reconstruction_candidate(FIT).epochs)
    assert both.name == "patchcore_vae resize 224 ratio 0.01 reconstruction 30 epochs"
    settings = settings_for(load_settings(scorer={"method": "vae", "params": {"mode": "energy"}}), both)
    params = scorer_params(settings.scorer)  # no VAE key carried over: the ensemble's params validate
    assert (settings.preprocess.image_size, params.coreset_ratio, params.vae_epochs) == (224, 0.01, 30)
    mine = load_settings(scorer={"method": "patchcore_vae", "params": {"coreset_ratio": 0.1, "vae_epochs": 7}})
    assert default_candidate(mine) == Candidate("resize", 224, 0.1, "patchcore_vae", OWN, MAP, 7)
    assert scorer_params(settings_for(mine, default_candidate(mine)).scorer) == scorer_params(mine.scorer)
    assert tap_candidates(default_candidate(mine), "mobilenet_v2") == []  # taps are PatchCore's alone


def test_the_grid_is_chosen_for_the_largest_frame() -> None:
    frames = (np.zeros((128, 128, 3), np.uint8), np.zeros((500, 700, 3), np.uint8), np.zeros((300, 300, 3), np.uint8))
    validation = ValidationSet(frames, (0, 0, 1), None, "none")
    assert validation.shape == (500, 700)
    assert ("tile", 224) in geometries(*validation.shape)


@pytest.mark.parametrize(("overrides", "expected"), [
    # the built-in defaults: PatchCore's own coreset ratio
    ({}, Candidate("resize", 224, 0.01, layers=OWN, frame_score=MAP)),
    ({"preprocess": {"mode": "tile", "tile_size": 256}, "scorer": {"params": {"coreset_ratio": 0.05}}},
     Candidate("tile", 256, 0.05, layers=OWN, frame_score=MAP)),
    ({"preprocess": {"mode": "letterbox", "image_size": 320}, "scorer": {"method": "vae", "params": {"epochs": 2}}},
     Candidate("letterbox", 320, 0.01, layers=OWN, frame_score=MAP)),  # another method: PatchCore's default ratio
    ({"scorer": {"params": {"coreset_ratio": "0.05"}}},  # a variable's string
     Candidate("resize", 224, 0.05, layers=OWN, frame_score=MAP)),
    ({"scorer": {"method": "padim"}}, Candidate("resize", 224, None, "padim", OWN, MAP)),
    ({"preprocess": {"map_score_fraction": None}},
     Candidate("resize", 224, 0.01, layers=OWN, frame_score=METHOD_SCORE)),
    ({"backbone": {"layers": ["features.10", "features.13"]}},
     Candidate("resize", 224, 0.01, layers=("features.10", "features.13"), frame_score=MAP)),
])
def test_the_default_candidate_is_what_the_settings_fit_untuned(overrides: dict, expected: Candidate) -> None:
    assert default_candidate(load_settings(**overrides)) == expected


def test_the_default_is_tried_first_and_only_once() -> None:
    grid = candidate_grid(640, 640, FIT, labelled=True)
    assert with_default(grid[0], grid) == grid
    outside = Candidate("resize", 256, 0.05)
    assert with_default(outside, grid) == [outside, *grid]
    # A grid candidate with the settings' own taps and frame score (None) is the default that names them.
    default = Candidate("resize", 224, 0.01, layers=OWN, frame_score=MAP)
    assert with_default(default, grid) == [default, *grid[1:]]
    assert with_default(default, [replace(default, frame_score=METHOD_SCORE)])[1].frame_score == METHOD_SCORE
    assert with_default(default, [Candidate("resize", 224, 0.01, layers=OTHER)])[1].layers == OTHER


def test_a_candidates_taps_are_named_and_written_to_backbone_layers_keeping_its_other_keys() -> None:
    other = Candidate("resize", 224, 0.01, layers=OTHER)
    assert other.name == f"patchcore resize 224 ratio 0.01 taps {'+'.join(OTHER)}"
    assert other.overrides()["backbone"] == {"layers": list(OTHER)}
    assert "backbone" not in Candidate("resize", 224, 0.01).overrides()  # None: the settings' own, not written
    tree = {"backbone": {"weights_path": "${shared_dir}/w.pth", "layers": list(OWN)}}
    merged = with_candidate(tree, other)
    assert merged["backbone"] == {"weights_path": "${shared_dir}/w.pth", "layers": list(OTHER)}
    assert tree["backbone"]["layers"] == list(OWN)  # the input is not changed
    assert with_candidate(tree, Candidate("resize", 320, 0.01))["backbone"] == tree["backbone"]
    assert settings_for(load_settings(), other).backbone.layers == list(OTHER)


def test_settings_with_other_taps_get_the_built_in_ones_as_an_alternative() -> None:
    assert TAP_SETS["mobilenet_v2"][0] == tuple(load_settings().backbone.layers) == OWN
    mine = Candidate("letterbox", 320, 0.05, layers=OTHER, frame_score=MAP)  # a ratio outside the grid: it stays whole
    assert tap_candidates(mine, "mobilenet_v2")[0] == Candidate("letterbox", 320, 0.05, layers=OWN, frame_score=MAP)
    assert OTHER not in {c.layers for c in tap_candidates(mine, "mobilenet_v2")}  # not twice
    taps = tap_candidates(mine, "mobilenet_v2")
    grid = line_grid(mine, "mobilenet_v2", 500, 1250, FIT, labelled=True)
    own = replace(mine, frame_score=METHOD_SCORE)
    assert grid == [mine, *taps, own, *candidate_grid(500, 1250, FIT, labelled=True)]
    assert taps_note(mine, "mobilenet_v2").startswith(f"the settings' own ({'+'.join(OTHER)}), and features.6+")


def test_mobilenet_v2_tries_the_stride_4_stage_at_the_defaults_configuration_second() -> None:
    default = Candidate("letterbox", 320, 0.05, layers=OWN, frame_score=MAP)  # a ratio outside the grid: it stays whole
    stride_4 = replace(default, layers=("features.6", "features.3", "features.13"))
    assert tap_candidates(default, "mobilenet_v2") == [stride_4]  # features.6 first: its stride-8 grid is kept
    own = replace(default, frame_score=METHOD_SCORE)
    grid = candidate_grid(500, 1250, FIT, labelled=False)
    assert line_grid(default, "mobilenet_v2", 500, 1250, FIT, labelled=False) == [default, stride_4, own, *grid]
    assert taps_note(default, "mobilenet_v2") == ("the settings' own (features.6+features.13), and "
                                                  "features.6+features.3+features.13 at the default's configuration")


@pytest.mark.parametrize("taps", TAP_SETS["mobilenet_v2"])
def test_mobilenet_v2s_tap_sets_are_its_nodes_and_keep_patchcores_stride_8_grid(taps: tuple[str, ...],
                                                                                 shared: Path) -> None:
    settings = settings_for(load_settings(), Candidate("resize", 64, 0.01, layers=taps))
    with torch.no_grad():
        emb = patch_embedding(load_backbone(settings.backbone)(torch.zeros(1, 3, 64, 64)), 3, None)
    assert emb.shape[-2:] == (8, 8)  # 64 / 8: as many patches as the built-in taps, so a fit costs about the same


def test_a_padim_default_keeps_its_own_taps_and_says_so() -> None:
    padim = Candidate("resize", 224, None, "padim", OTHER)
    assert tap_candidates(padim, "mobilenet_v2") == []
    assert taps_note(padim, "mobilenet_v2") == "only the settings' own: other taps are tried with patchcore, not padim"


def test_the_other_frame_score_is_tried_once_at_the_default_s_configuration() -> None:
    """tune tries the frame score the settings do not use on the same configuration: the method's own where they
    take the map's top fraction (the default), the map's top 1 % where they take the method's own. Only that
    candidate writes the rule into the pipeline file; every other keeps the settings' (None: their own)."""
    default = default_candidate(load_settings())
    assert default.frame_score == MAP
    (own,) = score_candidates(default)
    assert own == replace(default, frame_score=METHOD_SCORE) and own.name.endswith("score method's own")
    assert settings_for(load_settings(), own).preprocess.map_score_fraction is None
    assert "map_score_fraction" not in Candidate("resize", 224, 0.01).overrides()["preprocess"]
    method = load_settings(preprocess={"map_score_fraction": None})
    (scored,) = score_candidates(default_candidate(method))
    assert scored.frame_score == MAP and scored.name.endswith("score map top 1%")
    assert settings_for(method, scored).preprocess.map_score_fraction == MAP
    assert settings_for(method, Candidate("resize", 320, 0.1)).preprocess.map_score_fraction is None
    mine = load_settings(preprocess={"map_score_fraction": 0.05})
    assert score_candidates(default_candidate(mine)) == [replace(default_candidate(mine), frame_score=METHOD_SCORE)]
    assert settings_for(mine, Candidate("resize", 320, 0.1)).preprocess.map_score_fraction == 0.05


def test_another_backbone_keeps_its_own_taps_and_says_so() -> None:
    default = Candidate("resize", 224, 0.01, layers=("layer2", "layer3"), frame_score=MAP)
    assert tap_candidates(default, "resnet18") == []
    own = replace(default, frame_score=METHOD_SCORE)
    grid = candidate_grid(128, 128, FIT, labelled=True)
    assert line_grid(default, "resnet18", 128, 128, FIT, labelled=True) == [default, own, *grid[1:]]  # grid[0]: it
    assert taps_note(default, "resnet18") == ("only the settings' own: tune knows the node names of mobilenet_v2, "
                                              "not resnet18")
