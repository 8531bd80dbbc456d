"""PatchCore + VAE on a small real PIPED category at 64 px: the good images put both maps on one scale, a weight of 0
leaves PatchCore's map alone, a real impurity pasted into a good image scores where it is, the artefact and the
exported graph score as the fitted model, bad params fail by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stream_ad.artefact import load_model, save_model
from stream_ad.data import MVTecCategory, read_image
from stream_ad.errors import ArtefactError
from stream_ad.model import AnomalyModel
from stream_ad.scorers import ScorerContext, build_scorer
from stream_ad.scorers.ensemble.patchcore_vae import resampled, upsampled
from stream_ad.scorers.ensemble.scales import MapScales, standardised
from stream_ad.settings import ConfigError, ScorerSettings, Settings, load_settings
from tests.conftest import PIPED
from tests.scorers.conftest import assert_same_predictions

CATEGORY = PIPED / "PA_BDP01_TL"
DEFECT = "PA_BDP01_TL_S_D_06_4"  # the category's largest impurity (716 mask pixels of 128 x 128)
SIZE = 64
PARAMS = {"vae_size": 32, "vae_epochs": 20}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ensemble_settings(out: Path, **params: object) -> Settings:
    return load_settings(data={"root": str(CATEGORY)}, preprocess={"image_size": SIZE}, output_dir=str(out),
                         scorer={"method": "patchcore_vae", "params": {**PARAMS, **params}})


def train_paths() -> list[Path]:
    return [s.path for s in MVTecCategory(CATEGORY).train()]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> tuple[AnomalyModel, Path]:
    tmp = tmp_path_factory.mktemp("patchcore_vae")
    model = AnomalyModel(ensemble_settings(tmp))
    model.fit(train_paths())
    return model, save_model(model, tmp / "model")


def test_the_scales_are_each_map_s_mean_and_spread_whatever_the_batches() -> None:
    rng = np.random.default_rng(0)
    maps = [rng.gamma(2.0, 3.0, (5, 8, 8)), np.full((5, 8, 8), 7.0)]
    scales = MapScales(2)
    for rows in (slice(0, 2), slice(2, 5)):
        scales.add([torch.from_numpy(m[rows]).float() for m in maps])
    got = scales.scales()
    np.testing.assert_allclose(got.numpy(), [[maps[0].mean(), maps[0].std()], [7.0, 0.0]], rtol=1e-5, atol=1e-5)
    first = standardised(torch.from_numpy(maps[0]).float(), got[0]).double().numpy()
    assert abs(first.mean()) < 1e-5 and abs(first.std() - 1) < 1e-5
    assert torch.isfinite(standardised(torch.from_numpy(maps[1]).float(), got[1])).all()  # not divided by 0
    with pytest.raises(ValueError, match="no maps were added"):
        MapScales(2).scales()


def test_the_good_images_fitted_on_fix_each_map_s_scale(fitted: tuple[AnomalyModel, Path]) -> None:
    model, _ = fitted
    scorer = model.scorer
    images = torch.cat(list(model.image_batches(train_paths())))
    patchcore = scorer.patchcore.score(images).maps
    vae = upsampled(scorer.vae.score(resampled(images, scorer.params.vae_size)).maps, patchcore.shape[-2:])
    for maps, scale in ((patchcore, scorer.scales[0]), (vae, scorer.scales[1])):
        values = standardised(maps, scale).double()
        assert abs(float(values.mean())) < 1e-3 and abs(float(values.std(correction=0)) - 1) < 1e-3


def test_a_weight_of_0_leaves_patchcore_s_map_alone(fitted: tuple[AnomalyModel, Path]) -> None:
    model, _ = fitted
    scorer = model.scorer
    batch = torch.cat(list(model.image_batches([s.path for s in MVTecCategory(CATEGORY).test()[::12]])))
    both, fitted_params = scorer.score(batch).maps, scorer.params
    scorer.params = fitted_params.model_copy(update={"vae_weight": 0.0})
    try:
        alone = scorer.score(batch).maps
    finally:
        scorer.params = fitted_params
    want = standardised(scorer.patchcore.score(batch).maps, scorer.scales[0])
    torch.testing.assert_close(alone, want)
    assert not torch.allclose(both, want, atol=1e-3)


def test_a_pasted_impurity_scores_where_it_is(fitted: tuple[AnomalyModel, Path]) -> None:
    model, _ = fitted
    category = MVTecCategory(CATEGORY)
    defect = next(s for s in category.test() if s.path.stem == DEFECT)
    good = read_image(next(s.path for s in category.test() if s.label == 0))
    mask = cv2.imread(str(defect.mask_path), cv2.IMREAD_GRAYSCALE) > 0
    pasted = good.copy()
    pasted[mask] = read_image(defect.path)[mask]
    before, after = model.predict([good]), model.predict([pasted])
    assert after.scores[0] > before.scores[0]
    rise = after.maps[0] - before.maps[0]
    assert rise[mask].mean() > 3 * max(rise[~mask].mean(), 1e-6)


def test_the_artefact_scores_as_the_fitted_model(fitted: tuple[AnomalyModel, Path], tmp_path: Path) -> None:
    model, path = fitted
    frames = [read_image(s.path) for s in MVTecCategory(CATEGORY).test()[::16]]
    loaded = load_model(path)
    assert_same_predictions(loaded.predict(frames), model.predict(frames))
    with pytest.raises(ArtefactError, match=r"scorer.params.vae_weight: the artefact's 1.5, given 3.0"):
        load_model(path, ensemble_settings(tmp_path, vae_weight=3.0))
    load_model(path, ensemble_settings(tmp_path, vae_epochs=5, coreset_ratio=0.5))  # fitting only: no error


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_the_scoring_graph_scores_as_eager(fitted: tuple[AnomalyModel, Path]) -> None:
    model, _ = fitted
    batch = torch.cat(list(model.image_batches([s.path for s in MVTecCategory(CATEGORY).test()[::16]])))
    want = model.scorer.score(batch)
    graph = model.scorer.scoring_graph()
    with torch.inference_mode():
        image, maps = graph(batch)
    torch.testing.assert_close(image, want.image, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps, want.maps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("params", "named"), [
    ({"vae_size": 40}, "scorer.params.vae_size"),  # not a multiple of the VAE's 16
    ({"vae_weight": -1}, "scorer.params.vae_weight"),
    ({"coreset_ratio": 0.0}, "scorer.params.coreset_ratio"),  # PatchCore's, checked here too
    ({"epochs": 3}, "scorer.params.epochs"),  # the VAE's own name: here it is vae_epochs
])
def test_bad_params_are_named(params: dict[str, object], named: str) -> None:
    context = ScorerContext(load_settings().backbone, torch.device("cpu"), SIZE)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        build_scorer(ScorerSettings(method="patchcore_vae", params=params), context)
