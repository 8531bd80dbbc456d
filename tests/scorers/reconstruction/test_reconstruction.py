"""VAE + energy-based projection and DAAD on one small real PIPED category at 64 px: the projection descends its
energy, memory answers are convex combinations of memory items, artefacts and resumed training reproduce scores
exactly, bad settings fail by name, and briefly trained models react to a real defect pasted into a good image."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stream_ad.artefact import load_model, save_model
from stream_ad.data import MVTecCategory, read_image
from stream_ad.evaluation import evaluate
from stream_ad.model import AnomalyModel
from stream_ad.scorers import NotFittedError
from stream_ad.scorers.reconstruction.memory import BlockMemory
from stream_ad.scorers.reconstruction.projection import energy, project
from stream_ad.settings import ConfigError, Settings, load_settings
from tests.conftest import PIPED, REPO

CATEGORY = PIPED / "PA_BDP01_TL"
DEFECT = "PA_BDP01_TL_S_D_06_4"  # the category's largest impurity (716 mask pixels of 128 x 128)
SIZE = 64
VAE_PARAMS = {"epochs": 15, "batch_size": 8}
DAAD_PARAMS = {"epochs": 30, "batch_size": 8, "channels": [8, 16, 32, 64], "block_grids": [8, 4, 2, 1],
               "memory_items": 20, "discriminator_width": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def settings_for(method: str, out: Path, **params: object) -> Settings:
    return load_settings(
        data={"root": str(CATEGORY)}, preprocess={"image_size": SIZE}, output_dir=str(out),
        scorer={"method": method, "params": params},
    )


def train_paths() -> list[Path]:
    return [s.path for s in MVTecCategory(CATEGORY).train()]


def fitted(method: str, out: Path, **params: object) -> AnomalyModel:
    model = AnomalyModel(settings_for(method, out, **params))
    model.fit(train_paths())
    return model


@pytest.fixture(scope="module")
def vae(tmp_path_factory: pytest.TempPathFactory) -> AnomalyModel:
    return fitted("vae", tmp_path_factory.mktemp("vae"), **VAE_PARAMS)


@pytest.fixture(scope="module")
def daad(tmp_path_factory: pytest.TempPathFactory) -> AnomalyModel:
    return fitted("daad", tmp_path_factory.mktemp("daad"), **DAAD_PARAMS)


@pytest.fixture(scope="module")
def frames() -> dict[str, np.ndarray]:
    """A good test image, a defective one, its mask, and the good one with the defect's pixels pasted in."""
    root = CATEGORY / "test"
    good = read_image(sorted((root / "good").iterdir())[0])
    defective = read_image(root / "defect" / f"{DEFECT}.png")
    mask = cv2.imread(str(CATEGORY / "ground_truth" / "defect" / f"{DEFECT}_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    pasted = good.copy()
    pasted[mask] = defective[mask]
    return {"good": good, "defective": defective, "pasted": pasted, "mask": mask}


def inputs(model: AnomalyModel, *images: np.ndarray) -> torch.Tensor:
    return model.preprocessor(list(images)).inputs


# ---- the projection ----


def test_projection_lowers_the_energy_of_real_images(vae: AnomalyModel, frames: dict[str, np.ndarray]) -> None:
    x0 = inputs(vae, frames["good"], frames["defective"], frames["pasted"])
    f = vae.scorer.net.reconstruct
    result = project(x0, f, steps=10, alpha=0.05, lam=0.1)
    assert (result.steps >= 1).all()
    # Recomputed from scratch, not taken from the function's own bookkeeping.
    with torch.no_grad():
        before, after = energy(x0, x0, f, 0.1), energy(result.x, x0, f, 0.1)
    assert (after < 0.98 * before).all(), (before, after)
    assert torch.allclose(after, result.energies[-1], rtol=1e-4)
    assert (result.energies[1:] <= result.energies[:-1]).all()  # each accepted step descends


def test_projection_runs_under_inference_mode_and_ignores_batch_mates(vae: AnomalyModel,
                                                                      frames: dict[str, np.ndarray]) -> None:
    x0 = inputs(vae, frames["good"], frames["defective"])
    f = vae.scorer.net.reconstruct
    with torch.inference_mode():
        together = project(x0, f, steps=5, alpha=0.05, lam=0.1, tolerance=1e-3).x
    alone = project(x0[1:], f, steps=5, alpha=0.05, lam=0.1, tolerance=1e-3).x
    torch.testing.assert_close(together[1:], alone, rtol=1e-4, atol=1e-5)
    assert not torch.equal(together, x0)


def test_projection_differs_from_plain_reconstruction_error(vae: AnomalyModel, frames: dict[str, np.ndarray]) -> None:
    batch = inputs(vae, frames["defective"])
    scorer = vae.scorer
    projected = scorer.score(batch).maps
    scorer.params.mode = "reconstruction"
    try:
        plain = scorer.score(batch).maps
    finally:
        scorer.params.mode = "energy"
    assert (projected - plain).abs().mean() > 0.05 * plain.abs().mean()


# ---- the block-wise memory ----


def test_memory_weights_sum_to_one_and_answers_lie_in_the_items_span() -> None:
    torch.manual_seed(0)
    memory = BlockMemory(channels=4, size=8, grid=2, items=5, temperature=0.1)
    x = torch.randn(3, 4, 8, 8)
    queries = x.reshape(3, 4, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).reshape(12, 64)
    weights = memory.attention(queries)
    assert weights.shape == (12, 5) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(12))
    out = memory(x)
    blocks = out.reshape(3, 4, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).reshape(12, 64)
    coeffs = torch.linalg.lstsq(memory.items.detach().T, blocks.detach().T).solution
    residual = memory.items.detach().T @ coeffs - blocks.detach().T
    assert residual.abs().max() < 1e-4
    assert blocks.std(dim=0).mean() > 0.1  # different queries got different answers


def test_memory_puts_each_answer_back_in_its_block() -> None:
    """With the blocks of an image as the items and a sharp softmax, the memory returns that image."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 6, 6)
    memory = BlockMemory(channels=3, size=6, grid=3, items=9, temperature=1e-3)
    with torch.no_grad():
        memory.items.copy_(x.reshape(1, 3, 3, 2, 3, 2).permute(0, 2, 4, 1, 3, 5).reshape(9, 12))
    torch.testing.assert_close(memory(x), x, rtol=1e-4, atol=1e-4)


# ---- trained models on real images ----


@pytest.mark.parametrize("method", ["vae", "daad"])
def test_a_pasted_defect_raises_the_map_there(method: str, request: pytest.FixtureRequest,
                                              frames: dict[str, np.ndarray]) -> None:
    model: AnomalyModel = request.getfixturevalue(method)
    pred = model.predict([frames["good"], frames["pasted"]])
    good_map, pasted_map = pred.maps
    mask = frames["mask"]
    assert not np.allclose(good_map, pasted_map)  # a model that ignores its input fails here
    inside, outside = pasted_map[mask].mean(), pasted_map[~mask].mean()
    assert inside > 1.5 * good_map[mask].mean(), (inside, good_map[mask].mean())
    assert inside > 1.5 * outside, (inside, outside)
    assert pred.scores[1] > pred.scores[0]


@pytest.mark.parametrize("method", ["vae", "daad"])
def test_save_and_load_give_identical_scores(method: str, request: pytest.FixtureRequest, tmp_path: Path,
                                             frames: dict[str, np.ndarray]) -> None:
    model: AnomalyModel = request.getfixturevalue(method)
    loaded = load_model(save_model(model, tmp_path / method))
    images = [frames["good"], frames["pasted"]]
    a, b = model.predict(images), loaded.predict(images)
    np.testing.assert_array_equal(a.scores, b.scores)
    for x, y in zip(a.maps, b.maps):
        np.testing.assert_array_equal(x, y)


class Interrupted(Exception):
    pass


class StopAfterEpoch(logging.Handler):
    """Stops training when the log reports `epoch`: the checkpoints then hold only the epochs before it."""

    def __init__(self, epoch: str) -> None:
        super().__init__()
        self.epoch = epoch

    def emit(self, record: logging.LogRecord) -> None:
        if f"epoch {self.epoch}:" in record.getMessage():
            raise Interrupted


def test_resumed_training_equals_uninterrupted(tmp_path: Path) -> None:
    params = {**VAE_PARAMS, "epochs": 3}
    straight = fitted("vae", tmp_path / "straight", **params).scorer.state_tensors()
    logger = logging.getLogger("stream_ad.scorers.components.training")
    handler, level = StopAfterEpoch("3/3"), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the per-epoch line is a debug line
    try:
        with pytest.raises(Interrupted):
            fitted("vae", tmp_path / "resumed", **params)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert (tmp_path / "resumed" / "checkpoints" / "vae-vae.pt").is_file()
    resumed = fitted("vae", tmp_path / "resumed", **params).scorer.state_tensors()
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key


# ---- settings ----


@pytest.mark.parametrize(
    ("method", "params", "named"),
    [
        ("daad", {"memory_items": 0}, "params.memory_items"),
        ("daad", {"gamma": 1.5}, "params.gamma"),
        ("daad", {"block_grids": [16, 8, 4]}, "block_grids"),
        ("daad", {"block_grids": [16, 8, 0, 1]}, "params.block_grids.2"),
        ("vae", {"steps": 0}, "params.steps"),
        ("vae", {"mode": "both"}, "params.mode"),
        ("vae", {"latent": 8}, "params.latent: unknown key"),
    ],
)
def test_invalid_params_are_named(method: str, params: dict, named: str, tmp_path: Path) -> None:
    settings = settings_for(method, tmp_path, **params)  # a method's params are checked where it is built
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        AnomalyModel(settings)


@pytest.mark.parametrize(
    ("method", "size", "params", "named"),
    [
        ("vae", 72, {}, "image_size.*72.*divisible by 16"),
        ("daad", 72, {}, "image_size.*72.*divisible by 16"),
        ("daad", 64, {"block_grids": [16, 8, 4, 3]}, r"block_grids\[3\] = 3"),
    ],
)
def test_image_size_the_networks_cannot_cut_is_refused(method: str, size: int, params: dict, named: str,
                                                         tmp_path: Path) -> None:
    settings = settings_for(method, tmp_path, **params)
    settings.preprocess.image_size = size
    with pytest.raises(ValueError, match=named):
        AnomalyModel(settings)


@pytest.mark.parametrize("method", ["vae", "daad"])
def test_scoring_before_fitting_fails(method: str, tmp_path: Path) -> None:
    model = AnomalyModel(settings_for(method, tmp_path))
    with pytest.raises(NotFittedError):
        model.scorer.score(torch.zeros(1, 3, SIZE, SIZE))
    with pytest.raises(NotFittedError):
        model.scorer.state_tensors()


# ---- accuracy (opt-in: pytest -m accuracy; minutes on 2 cores) ----

PIPELINES = REPO / "pipelines"


@pytest.mark.accuracy
@pytest.mark.parametrize(
    ("pipeline", "params", "floors"),
    [
        # Measured on PA_BDP01_TL at 128 px (image AUROC, pixel AUROC, PRO); random maps sit near 0.5 / 0.5 / 0.15.
        ("vae", {"epochs": 60}, (0.95, 0.97, 0.85)),
        ("vae", {"epochs": 60, "mode": "reconstruction"}, (0.95, 0.97, 0.8)),
        ("daad", {"epochs": 40}, (0.95, 0.93, 0.65)),
    ],
)
def test_piped_accuracy(pipeline: str, params: dict, floors: tuple[float, float, float], tmp_path: Path) -> None:
    settings = load_settings(PIPELINES / f"{pipeline}.yaml", data={"root": str(CATEGORY)}, output_dir=str(tmp_path),
                             scorer={"params": params})
    model = AnomalyModel(settings)
    category = MVTecCategory(CATEGORY)
    model.fit([s.path for s in category.train()])
    row = evaluate(model, category.labelled_images()).rows["overall"]
    measured = (row["image_auroc"], row["pixel_auroc"], row["pro"])
    assert all(value >= floor for value, floor in zip(measured, floors)), row
