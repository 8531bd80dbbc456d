"""The candidate grid follows the frames' shape (the largest frame's); a candidate's keys merge into a whole
settings dump or a user's partial YAML alike, and give settings that validate."""

from __future__ import annotations

import numpy as np
import pytest

from stream_ad.scorers import scorer_params
from stream_ad.settings import load_settings
from stream_ad.tuning import (
    Candidate,
    ValidationSet,
    candidate_grid,
    default_candidate,
    settings_for,
    with_candidate,
    with_default,
)
from stream_ad.tuning.candidates import TILE_CORESET_POOL, TILE_CORESET_RATIOS


def geometries(height: int, width: int) -> list[tuple[str, int]]:
    return sorted({(c.mode, c.size) for c in candidate_grid(height, width)})


@pytest.mark.parametrize(("height", "width", "expected"), [
    (128, 128, [("resize", 224), ("resize", 320)]),  # square: letterbox would be resize again
    (500, 1250, [("letterbox", 224), ("letterbox", 320), ("resize", 224), ("tile", 224)]),
    (640, 640, [("resize", 224), ("resize", 320), ("tile", 224)]),
])
def test_the_grid_follows_the_frames_shape(height: int, width: int, expected: list[tuple[str, int]]) -> None:
    assert geometries(height, width) == expected
    grid = candidate_grid(height, width)
    assert grid[0] == Candidate("resize", 224, 0.01)  # the cheapest first: a short budget still tries it
    flat = [g for g in expected if g[0] != "tile"]
    assert len(set(grid)) == len(grid) == 2 * len(expected) + len(flat)  # + PaDiM at each geometry but tiles
    assert sorted((c.mode, c.size) for c in grid if c.method == "padim") == flat
    assert {c.coreset_ratio for c in grid if c.mode == "tile"} <= set(TILE_CORESET_RATIOS)


def test_a_tile_candidate_fits_on_a_pool_of_patches_and_counts_its_tiles() -> None:
    tile = Candidate("tile", 224, 0.01)
    assert tile.overrides()["scorer"]["params"]["coreset_pool"] == TILE_CORESET_POOL
    assert tile.input_pixels(640, 640, 0.25) == 16 * 224 * 224  # 4 x 4 tiles, as the README counts
    assert Candidate("letterbox", 320, 0.1).input_pixels(500, 1250, 0.25) == 320 * 320


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


def test_the_grid_is_chosen_for_the_largest_frame() -> None:
    frames = (np.zeros((128, 128, 3), np.uint8), np.zeros((500, 700, 3), np.uint8), np.zeros((300, 300, 3), np.uint8))
    validation = ValidationSet(frames, (0, 0, 1), None, "none")
    assert validation.shape == (500, 700)
    assert ("tile", 224) in geometries(*validation.shape)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, Candidate("resize", 224, 0.01)),  # the built-in defaults: PatchCore's own coreset ratio
    ({"preprocess": {"mode": "tile", "tile_size": 256}, "scorer": {"params": {"coreset_ratio": 0.05}}},
     Candidate("tile", 256, 0.05)),
    ({"preprocess": {"mode": "letterbox", "image_size": 320}, "scorer": {"method": "vae", "params": {"epochs": 2}}},
     Candidate("letterbox", 320, 0.01)),  # another method: its geometry, PatchCore's default ratio
    ({"scorer": {"params": {"coreset_ratio": "0.05"}}}, Candidate("resize", 224, 0.05)),  # as a variable gives it
    ({"scorer": {"method": "padim"}}, Candidate("resize", 224, None, "padim")),
])
def test_the_default_candidate_is_what_the_settings_fit_untuned(overrides: dict, expected: Candidate) -> None:
    assert default_candidate(load_settings(**overrides)) == expected


def test_the_default_is_tried_first_and_only_once() -> None:
    grid = candidate_grid(640, 640)
    assert with_default(grid[0], grid) == grid
    outside = Candidate("resize", 256, 0.05)
    assert with_default(outside, grid) == [outside, *grid]
