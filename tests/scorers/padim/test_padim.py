"""PaDiM on small real data (PIPED, 64 px): the streaming fit against numpy, where a changed patch scores, the
artefact round trip, the OpenVINO graph against eager, params checked by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_ad.artefact import load_model, save_model
from stream_ad.data import MVTecCategory, read_image
from stream_ad.errors import ArtefactError
from stream_ad.model import AnomalyModel
from stream_ad.scorers import ScorerContext, build_scorer
from stream_ad.scorers.components.moments import StreamingMoments
from stream_ad.scorers.padim.graph import as_rows, embedding, mahalanobis
from stream_ad.settings import ConfigError, ScorerSettings, Settings, load_settings
from tests.conftest import PIPED
from tests.scorers.conftest import assert_same_predictions

CATEGORY = PIPED / "PA_BDP01_TL"
SIZE = 64  # an 8 x 8 grid of Gaussians at the finest default tap (features.6, stride 8)
OPENVINO_RTOL = 1e-3  # the fp32 bound of every accelerated path against eager (runtime.accelerate.RTOL)


def padim_settings(tmp: Path, accelerate: str = "eager", **params: object) -> Settings:
    return load_settings(data={"root": str(CATEGORY)}, preprocess={"image_size": SIZE},
                         scorer={"method": "padim", "params": params},
                         runtime={"accelerate": accelerate, "threads": 2}, output_dir=str(tmp))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> tuple[AnomalyModel, Path, list[Path]]:
    """PaDiM fitted on 16 PIPED good images (d 40 of 128 channels), its artefact, the images."""
    tmp = tmp_path_factory.mktemp("padim")
    model = AnomalyModel(padim_settings(tmp, d=40))
    train = [s.path for s in MVTecCategory(CATEGORY).train()[:16]]
    model.fit(train)
    return model, save_model(model, tmp / "model"), train


def test_the_streaming_fit_equals_numpy_mean_and_covariance(fitted: tuple[AnomalyModel, Path, list[Path]]) -> None:
    model, _, train = fitted
    scorer = model.scorer
    rows = []
    for p in train:  # one image at a time: rows straight from the backbone, no streaming sums
        taps = scorer.features(model.preprocessor([read_image(p)]).inputs)
        rows.append(as_rows(embedding(taps, scorer.channels)).double().numpy()[0])
    x = np.stack(rows)  # (N, P, d)
    eps = scorer.params.covariance_eps
    for pos in (0, 27, x.shape[1] - 1):
        cov = np.cov(x[:, pos, :], rowvar=False) + eps * np.eye(x.shape[2])
        np.testing.assert_allclose(scorer.mean.reshape(-1, 40)[pos].numpy(), x[:, pos, :].mean(axis=0),
                                   rtol=1e-5, atol=1e-5)
        want = np.linalg.inv(cov)
        got = scorer.inv_covariance.reshape(-1, 40, 40)[pos].double().numpy()
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_streaming_moments_do_not_depend_on_the_batching() -> None:
    x = torch.from_numpy(np.random.default_rng(0).normal(3.0, 2.0, (50, 4, 6)))
    whole, parts = StreamingMoments(), StreamingMoments()
    whole.add(x)
    for chunk in x.split(7):
        parts.add(chunk)
    np.testing.assert_allclose(parts.covariance().numpy(), whole.covariance().numpy(), rtol=1e-10)
    np.testing.assert_allclose(whole.covariance()[2].numpy(), np.cov(x[:, 2].numpy(), rowvar=False), rtol=1e-10)
    with pytest.raises(ValueError, match="at least 2 samples"):
        one = StreamingMoments()
        one.add(x[:1])
        one.covariance()


def test_a_shifted_patch_raises_the_score_where_it_is(fitted: tuple[AnomalyModel, Path, list[Path]]) -> None:
    model, _, _ = fitted
    good = read_image(next(s.path for s in MVTecCategory(CATEGORY).test() if s.label == 0))
    shifted = good.copy()
    # The bottom-right quarter's texture moved up-left by 16 px, its brightness shifted: a defect at a known place.
    shifted[80:112, 80:112] = np.clip(good[64:96, 64:96].astype(int) + 60, 0, 255).astype(np.uint8)
    before, after = model.predict([good]), model.predict([shifted])
    assert after.scores[0] > before.scores[0]
    rise = after.maps[0] - before.maps[0]
    y, x = np.unravel_index(int(rise.argmax()), rise.shape)
    assert 64 <= y and 64 <= x  # in the patch's quarter: an 8 x 8 grid at 64 px is 16 px of the 128 px frame a cell
    assert rise[80:112, 80:112].mean() > 5 * max(rise[:48, :48].mean(), 1e-6)


def test_a_feature_off_its_position_s_gaussian_scores_there_only() -> None:
    mean = torch.zeros(4, 3)
    inverse = torch.eye(3).expand(4, 3, 3) * torch.tensor([1.0, 2.0, 4.0, 8.0]).view(4, 1, 1)
    rows = torch.zeros(2, 4, 3)
    rows[1, 2] = torch.tensor([1.0, 0.0, 0.0])
    dist = mahalanobis(rows, mean, inverse)
    np.testing.assert_allclose(dist.numpy(), [[0, 0, 0, 0], [0, 0, 2.0, 0]], atol=1e-6)


def test_the_artefact_round_trip_scores_identically(fitted: tuple[AnomalyModel, Path, list[Path]]) -> None:
    model, path, train = fitted
    frames = [read_image(s.path) for s in MVTecCategory(CATEGORY).test()[::16]]
    loaded = load_model(path)
    assert_same_predictions(loaded.predict(frames), model.predict(frames))
    for name, tensor in model.scorer.state_tensors().items():
        assert torch.equal(loaded.scorer.state_tensors()[name], tensor), name


def test_a_scoring_param_other_than_the_artefact_s_is_an_error(fitted: tuple[AnomalyModel, Path, list[Path]],
                                                                tmp_path: Path) -> None:
    _, path, _ = fitted
    with pytest.raises(ArtefactError, match=r"scorer.params.blur_sigma: the artefact's 4.0, given 2.0"):
        load_model(path, padim_settings(tmp_path, d=40, blur_sigma=2.0))
    load_model(path, padim_settings(tmp_path, d=7, seed=3, covariance_eps=0.5))  # fitting-only params: no error


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_the_openvino_graph_scores_as_eager(fitted: tuple[AnomalyModel, Path, list[Path]], tmp_path: Path) -> None:
    model, path, _ = fitted
    accelerated = load_model(path, padim_settings(tmp_path, "openvino", d=40))
    assert accelerated.scorer._graph is not None  # the whole path, not the backbone alone
    frames = [read_image(s.path) for s in MVTecCategory(CATEGORY).test()[::8]]
    for batch in (frames[:1], frames[:3], frames):
        want, got = model.predict(batch), accelerated.predict(batch)
        np.testing.assert_allclose(got.scores, want.scores, rtol=OPENVINO_RTOL)
        for g, w in zip(got.maps, want.maps, strict=True):
            assert np.abs(g - w).max() <= OPENVINO_RTOL * np.abs(w).max()


@pytest.mark.parametrize(("params", "named"), [
    ({"d": 0}, "scorer.params.d"),
    ({"covariance_eps": 0.0}, "scorer.params.covariance_eps"),
    ({"blur_sigma": -1}, "scorer.params.blur_sigma"),
    ({"coreset_ratio": 0.1}, "scorer.params.coreset_ratio"),  # PatchCore's, not PaDiM's
])
def test_bad_params_are_named(params: dict[str, object], named: str) -> None:
    settings = load_settings()
    context = ScorerContext(settings.backbone, torch.device("cpu"), SIZE)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        build_scorer(ScorerSettings(method="padim", params=params), context)


def test_all_channels_are_kept_when_d_exceeds_them(tmp_path: Path) -> None:
    model = AnomalyModel(padim_settings(tmp_path, d=1000))
    model.fit([s.path for s in MVTecCategory(CATEGORY).train()[:3]])
    assert model.scorer.channels.tolist() == list(range(128))  # features.6 (32) + features.13 (96)


def test_the_compiled_graph_s_cache_key_covers_the_shared_map_code() -> None:
    """A change to the map or blur code (scorers/components) must rebuild a cached OpenVINO graph, not reuse it."""
    import hashlib

    import stream_ad.scorers.components.maps as maps
    from stream_ad.runtime.accelerate import source_sha256
    from stream_ad.scorers.padim.graph import ScoringGraph

    files = sorted(Path(f) for f in (maps.__file__, maps.gaussian_kernel.__code__.co_filename,
                                     ScoringGraph.forward.__code__.co_filename))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    assert source_sha256(ScoringGraph) == h.hexdigest()
