"""`stream-ad export`: a calibrated model artefact -> a runtime artefact whose torch-free scores and maps equal the
model's, checked like every artefact, refused where it is of the other kind or damaged, and methods that cannot be
one graph say why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_ad.artefact import fitted_images, load_model, read_manifest
from stream_ad.commands.errors import CommandError
from stream_ad.data import read_image
from stream_ad.errors import ArtefactError
from stream_ad.line.artefact import GRAPH_BIN, read_runtime_manifest
from stream_ad.line.model import LineModel
from stream_ad.runtime.quantise import Int8Scope
from stream_ad.settings import Settings, load_settings
from tests.commands.conftest import FolderFit, cli

RTOL = 1e-4


@pytest.fixture(scope="module")
def exported(calibrated_fit: Path, folder_fit: FolderFit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "line1"
    run = cli("-c", folder_fit.config, "export", calibrated_fit, "--out", out)
    assert run.code == 0, run.stderr
    assert f"exported {calibrated_fit} -> {out}" in run.stdout
    return out


@pytest.mark.parametrize("streams", [1, 2])
def test_the_runtime_artefact_scores_as_the_model_does(exported: Path, calibrated_fit: Path, folder_fit: FolderFit,
                                                      streams: int) -> None:
    """Also with two requests side by side (a batch split across them, as many cameras' infer stage runs it)."""
    model = load_model(calibrated_fit, load_settings(folder_fit.config))
    line = LineModel(exported, threads=2, streams=streams)
    held_out = fitted_images(read_manifest(calibrated_fit), model.settings.data.root, "held_out")
    frames = [read_image(p) for p in held_out[:4]]
    frames.append(np.ascontiguousarray(frames[0][:100, :, :]))  # another frame size: the resize differs
    want, got = model.predict(frames), line.predict(frames)
    np.testing.assert_allclose(got.scores, want.scores, rtol=RTOL)
    for g, w in zip(got.maps, want.maps, strict=True):
        assert g.shape == w.shape
        assert np.abs(g - w).max() <= RTOL * np.abs(w).max()


def test_the_manifest_carries_threshold_preprocessing_and_the_named_bank(exported: Path,
                                                                         calibrated_fit: Path) -> None:
    runtime, model = read_runtime_manifest(exported), read_manifest(calibrated_fit)
    assert runtime.kind == "runtime" and runtime.threshold == model.threshold
    assert runtime.threshold_value is not None and runtime.nonnegative_scores
    assert runtime.preprocessing["image_size"] == 128 and len(runtime.preprocessing["mean255"]) == 3
    assert "self.memory" in runtime.graph["constants"] and runtime.graph["images_per_call"] >= 1
    assert runtime.exported_from["state_sha256"] == model.files["state.safetensors"]


def test_each_kind_is_refused_where_the_other_is_expected(exported: Path, calibrated_fit: Path,
                                                          folder_fit: FolderFit) -> None:
    with pytest.raises(ArtefactError, match="is a runtime artefact .* not a model artefact"):
        read_manifest(exported)
    with pytest.raises(ArtefactError, match="is a model artefact .* not a runtime artefact .*stream-ad export"):
        read_runtime_manifest(calibrated_fit)
    assert "is a runtime artefact" in cli("-c", folder_fit.config, "calibrate", "--model", exported).error


def test_a_damaged_graph_is_refused_naming_it(exported: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(exported, tmp_path / "copy"))
    data = bytearray((copy / GRAPH_BIN).read_bytes())
    data[len(data) // 2] ^= 1
    (copy / GRAPH_BIN).write_bytes(bytes(data))
    with pytest.raises(ArtefactError, match=f"{GRAPH_BIN} has sha256 .* but manifest.json records"):
        LineModel(copy, threads=1)


def test_formats_it_cannot_read_and_modes_it_does_not_know_are_refused(exported: Path, tmp_path: Path) -> None:
    """Format 2 (before aspect mode) still reads; format 1 and a mode this version does not know are refused, not
    cut as something else."""
    import json
    import shutil

    from stream_ad.runtime.checksums import sha256_bytes, write_sums

    for n, (change, error) in enumerate([
        ({"format_version": 2}, None),
        ({"format_version": 1}, "has runtime artefact format 1; .* reads formats 2, 3: export it again"),
        ({"preprocessing": "zoom"}, "preprocessing.mode 'zoom' is not one of resize, letterbox, tile, aspect"),
    ]):
        copy = Path(shutil.copytree(exported, tmp_path / str(n)))
        raw = json.loads((copy / "manifest.json").read_text())
        if "preprocessing" in change:
            change = {"preprocessing": {**raw["preprocessing"], "mode": change["preprocessing"]}}
        data = json.dumps({**raw, **change}).encode()
        (copy / "manifest.json").write_bytes(data)
        write_sums(copy, {"manifest.json": sha256_bytes(data)})
        if error is None:
            assert read_runtime_manifest(copy).format_version == 2
        else:
            with pytest.raises(ArtefactError, match=error):
                read_runtime_manifest(copy)


def test_export_never_writes_into_a_used_folder(exported: Path, calibrated_fit: Path, folder_fit: FolderFit) -> None:
    assert "exists and is not empty" in cli("-c", folder_fit.config, "export", calibrated_fit, "--out",
                                            exported).error


def test_a_method_optimising_at_test_time_cannot_export() -> None:
    import torch

    from stream_ad.scorers import NotExportable, ScorerContext, build_scorer
    from stream_ad.settings import ScorerSettings

    settings = load_settings()
    context = ScorerContext(settings.backbone, torch.device("cpu"), 64)
    vae = build_scorer(ScorerSettings(method="vae", params={"mode": "energy"}), context)
    with pytest.raises(NotExportable, match="gradient steps at test time"):
        vae.scoring_graph()


# Each method trained for a token budget (the graph's faithfulness does not depend on training), at the smallest
# input it takes.
BRIEF_FITS = {
    "vae": (64, {"mode": "reconstruction", "epochs": 1}),
    "daad": (64, {"epochs": 1}),
    "efficientad": (64, {"teacher_steps": 2, "steps": 2, "checkpoint_every": 1}),
    "padim": (64, {}),
    # no --int8 search: its maps' scales were fitted on float32 distances, so PatchCore's search stays float32
    "patchcore_vae": (64, {"vae_size": 32, "vae_epochs": 1}),
    "uninformed_students": (80, {"teacher_epochs": 1, "student_epochs": 1, "patches_per_epoch": 64, "batch_size": 16}),
}


def _fit_export_compare(tmp_path: Path, method: str, preprocess: dict[str, object], params: dict[str, object],
                        rows: int | None = None) -> tuple[Settings, Path]:
    """Fit `method` briefly on 8 images (each cut to its first `rows`, written as PNG files), export it, and check
    that the runtime artefact scores two of them as the model does; the settings and the model artefact."""
    from PIL import Image

    from stream_ad.artefact import save_model
    from stream_ad.commands.export import export
    from stream_ad.data import MVTecCategory
    from stream_ad.model import AnomalyModel
    from tests.commands.conftest import CATEGORY

    settings = load_settings(data={"root": str(CATEGORY)}, preprocess=preprocess,
                             scorer={"method": method, "params": params},
                             runtime={"accelerate": "eager", "threads": 2}, output_dir=str(tmp_path))
    model = AnomalyModel(settings)
    train = [s.path for s in MVTecCategory(CATEGORY).train()[:8]]
    if rows is not None:
        (tmp_path / "cut").mkdir()
        for i, path in enumerate(train):
            train[i] = tmp_path / "cut" / f"{path.stem}.png"
            Image.fromarray(read_image(path)[:rows]).save(train[i])
    frames = [read_image(p) for p in train]
    model.fit(train)
    artefact = save_model(model, tmp_path / "model")
    assert export(settings, artefact, tmp_path / "runtime") == 0
    want, got = model.predict(frames[:2]), LineModel(tmp_path / "runtime", threads=2).predict(frames[:2])
    np.testing.assert_allclose(got.scores, want.scores, rtol=RTOL)
    for g, w in zip(got.maps, want.maps, strict=True):
        assert g.shape == w.shape and np.abs(g - w).max() <= RTOL * np.abs(w).max()
    return settings, artefact


@pytest.mark.parametrize("method", sorted(BRIEF_FITS))
def test_every_one_pass_method_exports_and_scores_as_it_does(method: str, tmp_path: Path) -> None:
    from stream_ad.commands.export import export

    size, params = BRIEF_FITS[method]
    settings, artefact = _fit_export_compare(tmp_path, method, {"image_size": size}, params)
    with pytest.raises(CommandError, match=f"--int8 search: {method} offers no nearest-neighbour search to quantise"):
        export(settings, artefact, tmp_path / "search", int8=Int8Scope.SEARCH)


def test_frames_far_from_square_in_aspect_mode_score_on_the_line_as_in_the_model(tmp_path: Path) -> None:
    """Frames cut to a third of their height (43 x 128) at 64 px across (64 x 191): four tiles each along the long
    side, resampled and stitched by the line runtime's own (torch-free) geometry."""
    _fit_export_compare(tmp_path, "patchcore", {"mode": "aspect", "image_size": 64}, {"coreset_ratio": 0.1}, rows=43)
