"""runtime.accelerate: each compiled path against eager on the same real inputs, dynamic batch sizes without
recompiling, the on-disk cache, auto's logged choice and the errors for paths that cannot run here."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_ad.artefact import load_model, save_model
from stream_ad.backbones import load_backbone
from stream_ad.data import MVTecCategory, read_image
from stream_ad.model import AnomalyModel
from stream_ad.runtime.accelerate import (
    RTOL,
    AccelerateError,
    AccelerateSpec,
    accelerate_backbone,
    bucket,
    choose_path,
)
from stream_ad.runtime.openvino import decline_openvino_telemetry
from stream_ad.settings import Settings, load_settings
from tests.conftest import PIPED, FaultFigures

CATEGORY = PIPED / "PA_BDP01_TL"
MAX_BATCH = 4
CPU = torch.device("cpu")
no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def settings(**runtime: object) -> Settings:
    return load_settings(data={"root": str(CATEGORY)}, runtime=runtime,
                         scorer={"params": {"coreset_ratio": 0.1}})


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """MAX_BATCH real test images (good and defective), preprocessed as the product does."""
    model = AnomalyModel(settings(accelerate="eager"))
    samples = MVTecCategory(CATEGORY).test()[:: len(MVTecCategory(CATEGORY).test()) // MAX_BATCH][:MAX_BATCH]
    return model.preprocessor([read_image(s.path) for s in samples]).inputs


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / a.float().abs().max())


def check_against_eager(features, eager, x: torch.Tensor, rtol: float) -> None:  # noqa: ANN001
    """Every batch size 1..len(x): the same taps as eager within rtol."""
    for n in range(1, len(x) + 1):
        want = eager(x[:n])
        got = features(x[:n].to(next(eager.parameters()).device))
        assert len(got) == len(want)
        for w, g in zip(want, got):
            assert g.shape == w.shape
            assert rel_error(w, g) < rtol, f"batch {n}: {rel_error(w, g):.2e} >= {rtol}"


@pytest.fixture(scope="module")
def openvino_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accel-cache")


def test_openvino_matches_eager_at_every_batch_size_with_one_compile(images: torch.Tensor,
                                                                    openvino_cache: Path) -> None:
    eager = load_backbone(settings().backbone)
    ov = accelerate_backbone(eager, CPU, images.shape[-1], AccelerateSpec("openvino", cache_dir=openvino_cache))
    assert ov.path == "openvino" and ov.dynamic_batch()
    check_against_eager(ov, eager, images, RTOL["fp32"])
    assert ov.compilations == 1  # batch sizes 1..MAX_BATCH through one dynamic-batch compilation
    # Two requests side by side: each batch split in two parts run at once, the same features.
    two = accelerate_backbone(eager, CPU, images.shape[-1],
                              AccelerateSpec("openvino", cache_dir=openvino_cache, streams=2))
    assert two.requests.streams == 2
    check_against_eager(two, eager, images, RTOL["fp32"])


def test_openvino_reuses_its_cache(images: torch.Tensor, openvino_cache: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    test_openvino_matches_eager_at_every_batch_size_with_one_compile(images, openvino_cache)  # fills the cache
    entries = sorted(p.name for p in openvino_cache.iterdir())
    with caplog.at_level(logging.INFO, logger="stream_ad.runtime.accelerate"):
        accelerate_backbone(load_backbone(settings().backbone), CPU, images.shape[-1],
                            AccelerateSpec("openvino", cache_dir=openvino_cache))
    assert "openvino: cached model" in caplog.text
    assert sorted(p.name for p in openvino_cache.iterdir()) == entries
    other_size = accelerate_backbone(load_backbone(settings().backbone), CPU, 128,
                                     AccelerateSpec("openvino", cache_dir=openvino_cache))
    assert other_size(images[:1, :, :128, :128])[0].shape[-1] == 16
    assert len(list(openvino_cache.iterdir())) == len(entries) + 1  # another input shape, another entry


@pytest.fixture(scope="module")
def patchcore_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnomalyModel, Path]:
    """PatchCore fitted once, eagerly, on the category's train images, and saved: what the graph tests serve."""
    eager = AnomalyModel(settings(accelerate="eager"))
    eager.fit([s.path for s in MVTecCategory(CATEGORY).train()])
    return eager, save_model(eager, tmp_path_factory.mktemp("patchcore") / "model")


def test_openvino_patchcore_scores_match_eager(patchcore_fit: tuple[AnomalyModel, Path], tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Fitted once (eager), served by both paths: same image scores and maps, the OpenVINO side through one graph
    (backbone to maps) at every batch size, cached on disk for the next load."""
    cat = MVTecCategory(CATEGORY)
    eager, model = patchcore_fit
    openvino = settings(accelerate="openvino", cache_dir=str(tmp_path / "cache"))
    ov = load_model(model, openvino)
    assert ov.scorer.bank is not None
    graph = ov.scorer.bank.graph
    assert graph is not None and not graph.dynamic_batch()  # one image a call, compiled for that shape
    frames = [read_image(s.path) for s in cat.test()[::6]]
    want, got = eager.predict(frames), ov.predict(frames)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-3)
    for w, g in zip(want.maps, got.maps):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))
    x = ov.preprocessor(frames[:MAX_BATCH]).inputs
    for n in range(1, MAX_BATCH + 1):
        np.testing.assert_allclose(ov.scorer.score(x[:n]).image, eager.scorer.score(x[:n]).image, rtol=1e-3)
    assert graph.compilations == 1
    # Two requests side by side (many cameras' infer stage): the batch's images split across them, same figures.
    side_by_side = load_model(model, openvino, streams=2)
    assert side_by_side.scorer.parallel_calls() == 2
    np.testing.assert_allclose(side_by_side.scorer.score(x).image, ov.scorer.score(x).image, rtol=1e-6)
    with caplog.at_level(logging.INFO, logger="stream_ad.runtime.accelerate"):
        load_model(model, openvino)
    # The backbone (to fit with), again for the scoring graph, and the graph's head.
    assert caplog.text.count("openvino: cached model") == 3


def test_the_graph_s_maps_are_exact_where_patches_lie_on_bank_items(patchcore_fit: tuple[AnomalyModel, Path]) -> None:
    """Training images scored: their patches the coreset kept lie on bank items, at distance 0. Distances from the
    matmul expansion (||q||^2 + ||m||^2 - 2 q.m) cancel there in float32 and moved maps by 2.5e-4-6.9e-4 of their
    scale on PIPED sets, failing the export's 1e-4 check; the graph recomputes each patch's distance to its nearest
    item directly, as the step-by-step path does."""
    eager, model = patchcore_fit
    ov = load_model(model, settings(accelerate="openvino"))
    frames = [read_image(s.path) for s in MVTecCategory(CATEGORY).train()[:6]]
    want, got = eager.predict(frames), ov.predict(frames)
    scale = max(float(np.abs(w).max()) for w in want.maps)
    worst = max(float(np.abs(g - w).max()) for g, w in zip(got.maps, want.maps))
    assert worst <= 1e-5 * scale, worst / scale
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)


def test_a_tampered_openvino_graph_is_rebuilt_not_used(patchcore_fit: tuple[AnomalyModel, Path], tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture,
                                                       fault_figures: Callable[[FaultFigures], None]) -> None:
    """The probe's attack: the backbone's first convolution halved inside the cached backbone's model.bin, which
    PatchCore's scoring graph is built on (its bank is put in at each compile, never cached). The next load finds the
    entry stale by its sums, says so in one line, rebuilds it and scores as the eager path does."""
    cat = MVTecCategory(CATEGORY)
    eager, model = patchcore_fit
    openvino = settings(accelerate="openvino", cache_dir=str(tmp_path / "cache"))
    load_model(model, openvino)
    (entry,) = (p for p in (tmp_path / "cache").glob("mobilenet_v2-openvino-fp32-*") if "-graph-" not in p.name)
    weights = entry / "model.bin"
    data = bytearray(weights.read_bytes())
    conv = next(iter(eager.scorer.backbone.state_dict().values())).contiguous().numpy()
    start = bytes(data).find(conv.tobytes())
    assert start >= 0, "the first convolution is not stored as is in the backbone's weights"
    data[start:start + conv.nbytes] = (conv / 2).tobytes()
    weights.write_bytes(bytes(data))
    frames = [read_image(s.path) for s in cat.test()[::6]]
    want = eager.predict(frames).scores
    x = eager.preprocessor(frames).inputs.numpy()
    import openvino as ov  # the tampered backbone, compiled unchecked, computes otherwise: the sums are what catch it

    tampered = ov.Core().compile_model(ov.Core().read_model(entry / "model.xml"), "CPU")
    assert not np.allclose(tampered(x)[0], eager.scorer.backbone(torch.from_numpy(x))[0].detach().numpy(),
                           rtol=1e-3)
    with caplog.at_level(logging.INFO, logger="stream_ad.runtime.accelerate"):
        reloaded = load_model(model, openvino)
    stale = [r.getMessage() for r in caplog.records if "is stale" in r.getMessage()]
    assert len(stale) == 1 and f"cache entry {entry} is stale (model.bin has sha256" in stale[0], stale
    assert "rebuilding it, never using it" in stale[0]
    np.testing.assert_allclose(reloaded.predict(frames).scores, want, rtol=1e-3)
    fault_figures(FaultFigures("model tampering: the cached OpenVINO backbone's first convolution halved",
                               "model.bin edited",
                               "found stale by its sums at load, rebuilt, scores as the eager path", 0))
    # Missing sums (an entry of an older stream_ad, or cut short) are stale too.
    (entry / "SHA256SUMS").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stream_ad.runtime.accelerate"):
        load_model(model, openvino)
    assert f"cache entry {entry} is stale (it has no SHA256SUMS)" in caplog.text
    assert (entry / "SHA256SUMS").is_file()


def efficientad_settings(**runtime: object) -> Settings:
    return load_settings(data={"root": str(CATEGORY)}, preprocess={"image_size": 64}, runtime=runtime,
                         scorer={"method": "efficientad", "params": {"teacher_steps": 4, "steps": 4}})


@pytest.mark.parametrize("path", [
    "openvino",
    pytest.param("torch_compile", marks=no_cuda),
    pytest.param("tensorrt", marks=[no_cuda, pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is None,
                                                                reason="torch-tensorrt is not installed")]),
])
def test_efficientad_networks_on_each_path_match_eager(path: str, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The PDN scorer's networks (teacher, student, autoencoder, map normalisation) behind runtime.accelerate: the
    same maps as eager at every batch size, converted once and cached for the next load."""
    device = "cpu" if path == "openvino" else "cuda"
    cat = MVTecCategory(CATEGORY)
    eager = AnomalyModel(efficientad_settings(accelerate="eager", device=device))
    eager.fit([s.path for s in cat.train()])
    save_model(eager, tmp_path / "model")
    accelerated = efficientad_settings(accelerate=path, device=device, cache_dir=str(tmp_path / "cache"))
    fast = load_model(tmp_path / "model", accelerated)
    assert fast.scorer._maps.path == path  # type: ignore[attr-defined]
    x = fast.preprocessor([read_image(s.path) for s in cat.test()[:: len(cat.test()) // MAX_BATCH]]).inputs
    rtol = RTOL["fp16" if path == "tensorrt" else "fp32"]
    for n in range(1, MAX_BATCH + 1):
        want, got = eager.scorer.score(x[:n]), fast.scorer.score(x[:n])
        assert rel_error(want.maps, got.maps) < rtol, f"batch {n}: {rel_error(want.maps, got.maps):.2e}"
        assert rel_error(want.image, got.image) < rtol
    if path == "openvino":
        assert fast.scorer._maps.compilations == 1  # type: ignore[attr-defined]
        with caplog.at_level(logging.INFO, logger="stream_ad.runtime.accelerate"):
            load_model(tmp_path / "model", accelerated)
        assert caplog.text.count("openvino: cached model") == 1


@pytest.mark.skipif(importlib.util.find_spec("openvino_telemetry") is None, reason="OpenVINO without telemetry")
def test_openvino_telemetry_is_declined_in_its_consent_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    decline_openvino_telemetry()
    assert (tmp_path / "intel" / "openvino_telemetry").read_text() == "0"
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

    assert OptInChecker().check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED


def test_auto_logs_its_choice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="stream_ad.runtime.accelerate"):
        features = accelerate_backbone(load_backbone(settings().backbone), CPU, 64, AccelerateSpec("auto"))
    want = "openvino" if importlib.util.find_spec("openvino") else "eager"
    assert features.path == want
    assert f"runs {want} (fp32) on cpu: auto on cpu" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_tensorrt_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(AccelerateError, match=r"runtime.accelerate is 'tensorrt' but TensorRT needs a CUDA device"):
        AnomalyModel(settings(accelerate="tensorrt", device="cpu"))


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None, reason="torch-tensorrt is installed")
def test_tensorrt_not_installed_names_the_extra() -> None:
    with pytest.raises(AccelerateError, match=r"torch-tensorrt is not installed: pip install 'stream-ad\[tensorrt\]'"):
        choose_path("tensorrt", torch.device("cuda"))


def test_reduced_precision_needs_tensorrt() -> None:
    with pytest.raises(AccelerateError, match=r"runtime.precision 'fp16' needs runtime.accelerate 'tensorrt'"):
        AnomalyModel(settings(accelerate="eager", precision="fp16"))


def test_buckets_are_powers_of_two() -> None:
    assert [bucket(n) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 16]


def _check_torch_compile(device: torch.device, images: torch.Tensor, tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    eager = load_backbone(settings().backbone, device)
    compiled = accelerate_backbone(eager, device, images.shape[-1],
                                   AccelerateSpec("torch_compile", cache_dir=tmp_path))
    counters.clear()
    check_against_eager(compiled, eager, images, RTOL["fp32"])
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == len({bucket(n) for n in range(1, MAX_BATCH + 1)})  # one per bucket, none per batch size
    check_against_eager(compiled, eager, images, RTOL["fp32"])
    assert counters["stats"]["unique_graphs"] == graphs  # served again: no recompilation


@pytest.mark.skipif(torch.cuda.is_available() or os.environ.get("STREAM_AD_TEST_TORCH_COMPILE") != "1",
                    reason="inductor takes 30-100 s per bucket on the 2-core CPU CI machine (3 buckets); runs on "
                           "CUDA below, or here with STREAM_AD_TEST_TORCH_COMPILE=1")
def test_torch_compile_on_cpu_matches_eager_without_recompiling(images: torch.Tensor, tmp_path: Path) -> None:
    _check_torch_compile(CPU, images, tmp_path)


@no_cuda
def test_torch_compile_on_cuda_matches_eager_without_recompiling(images: torch.Tensor, tmp_path: Path) -> None:
    _check_torch_compile(torch.device("cuda"), images, tmp_path)


@no_cuda
@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is None, reason="torch-tensorrt is not installed")
def test_tensorrt_fp16_matches_eager_and_reuses_its_engine(images: torch.Tensor, tmp_path: Path) -> None:
    cuda = torch.device("cuda")
    eager = load_backbone(settings().backbone, cuda)
    spec = AccelerateSpec("tensorrt", "fp16", tmp_path, MAX_BATCH)
    trt = accelerate_backbone(eager, cuda, images.shape[-1], spec)
    check_against_eager(trt, eager, images, RTOL["fp16"])
    assert any(tmp_path.rglob("*")), "no engine cached on disk"
    again = accelerate_backbone(load_backbone(settings().backbone, cuda), cuda, images.shape[-1], spec)
    check_against_eager(again, eager, images, RTOL["fp16"])


@no_cuda
def test_auto_on_cuda_prefers_tensorrt_then_torch_compile() -> None:
    cuda = torch.device("cuda")
    features = accelerate_backbone(load_backbone(settings().backbone, cuda), cuda, 64, AccelerateSpec("auto"))
    want = "tensorrt" if importlib.util.find_spec("torch_tensorrt") else "torch_compile"
    assert features.path == want
