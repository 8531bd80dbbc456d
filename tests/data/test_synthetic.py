"""Synthetic defects on real good images (a PIPED category), grey and colour: a bounded, non-empty mask, the image
changed inside it only, shape and dtype kept, the same seed giving the same defects."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream_ad.data import MVTecCategory, read_image
from stream_ad.data.synthetic import KINDS, MAX_AREA, cut_paste, perlin, scratch, synthetic_defects
from tests.conftest import PIPED


@pytest.fixture(scope="module")
def colour() -> list[np.ndarray]:
    paths = [s.path for s in MVTecCategory(PIPED / "PA_BDP01_TL").train()[:4]]
    # Not square, so that a swapped height and width would show.
    return [cv2.resize(read_image(p), (160, 128)) for p in paths]


@pytest.fixture(scope="module")
def grey(colour: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in colour]


@pytest.mark.parametrize("channels", ["grey", "colour"])
def test_every_kind_changes_only_a_bounded_masked_area(channels: str, request: pytest.FixtureRequest) -> None:
    images = request.getfixturevalue(channels)
    defects = synthetic_defects(images, count=30, seed=3)
    assert [d.kind for d in defects[:3]] == list(KINDS)
    for i, defect in enumerate(defects):
        good = images[i % len(images)]
        assert defect.image.shape == good.shape and defect.image.dtype == np.uint8
        assert defect.mask.shape == good.shape[:2] and defect.mask.dtype == bool
        assert 0 < defect.mask.mean() <= MAX_AREA * 1.05, defect.kind
        assert np.array_equal(defect.image[~defect.mask], good[~defect.mask]), defect.kind
        changed = np.any(defect.image != good, axis=-1) if good.ndim == 3 else defect.image != good
        assert changed.sum() > 0.5 * defect.mask.sum(), defect.kind  # a visible defect, not a mask alone


def test_the_same_seed_gives_the_same_defects_and_another_seed_others(colour: list[np.ndarray]) -> None:
    first, again, other = (synthetic_defects(colour, 6, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) for a, b in zip(first, again))
    assert not all(np.array_equal(a.mask, b.mask) for a, b in zip(first, other))


def test_each_kind_alone(colour: list[np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    pasted = cut_paste(colour[0], colour[1], rng)
    assert pasted.kind == "cut_paste" and pasted.mask.any()
    scratched = scratch(colour[0], rng)
    assert 0 < scratched.mask.mean() < 0.1  # thin lines, not a blotch
    inverted = perlin(colour[0], np.random.default_rng(5), texture=255 - colour[0])
    # Blended with the inverted image at an opacity of at least 0.5: every masked pixel moved towards it.
    moved = np.abs(inverted.image.astype(int) - colour[0])[inverted.mask]
    assert np.all(moved >= np.floor(0.5 * np.abs(255 - 2 * colour[0].astype(int))[inverted.mask]) - 1)


def test_the_kinds_asked_for_are_made_in_turn_and_an_unknown_one_is_named(colour: list[np.ndarray]) -> None:
    made = synthetic_defects(colour, 6, seed=0, kinds=("perlin", "scratch"))
    assert [d.kind for d in made] == ["perlin", "scratch"] * 3
    with pytest.raises(ValueError, match="'dent'; the kinds are cut_paste, scratch, perlin"):
        synthetic_defects(colour, 6, seed=0, kinds=("scratch", "dent"))
    with pytest.raises(ValueError, match="none given"):
        synthetic_defects(colour, 6, seed=0, kinds=())


def test_no_images_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one good image"):
        synthetic_defects([], 3, 0)
