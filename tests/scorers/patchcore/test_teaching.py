"""Teaching PatchCore a frame it flagged: its patches join the bank, the frame scores below the bound, the OpenVINO
graph (the bank baked in) is rebuilt rather than left scoring with the old bank, and the grown bank scores only once
swapped in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream_ad.artefact import load_model
from stream_ad.data.folders import read_image
from stream_ad.model import AnomalyModel
from stream_ad.settings import load_settings
from tests.teaching import DEFECT


def _load(path: Path, accelerate: str) -> AnomalyModel:
    return load_model(path, load_settings(runtime={"accelerate": accelerate}))


@pytest.mark.parametrize("accelerate", ["eager", "openvino"])
def test_taught_frame_scores_within_the_bound(piped_patchcore: tuple[AnomalyModel, Path], accelerate: str) -> None:
    model = _load(piped_patchcore[1], accelerate)
    frame = read_image(DEFECT)
    before = float(model.predict([frame]).scores[0])
    bank = model.scorer.memory.shape[0]
    within = before / 4
    items = model.scorer.good_items(model.preprocessor([frame]).inputs, within=within, limit=1000)
    assert model.scorer.memory.shape[0] == bank  # picking the items changes nothing
    model.scorer.add_memory(items)
    after = float(model.predict([frame]).scores[0])
    assert 0 < items.shape[0] < 1000
    assert model.scorer.memory.shape[0] == bank + items.shape[0]
    assert after <= within < before


def test_teaching_adds_no_more_than_its_limit(piped_patchcore: tuple[AnomalyModel, Path]) -> None:
    model = _load(piped_patchcore[1], "eager")
    frame = read_image(DEFECT)
    before = float(model.predict([frame]).scores[0])
    items = model.scorer.good_items(model.preprocessor([frame]).inputs, within=0.0, limit=3)
    assert items.shape[0] == 3
    model.scorer.add_memory(items)
    assert float(model.predict([frame]).scores[0]) <= before


def test_openvino_graph_scores_with_the_new_bank(piped_patchcore: tuple[AnomalyModel, Path]) -> None:
    """Items taught on one model and replayed into an OpenVINO-compiled one: both score the frame alike, so the
    compiled graph holds the new bank."""
    eager, compiled = _load(piped_patchcore[1], "eager"), _load(piped_patchcore[1], "openvino")
    frame = read_image(DEFECT)
    before = float(compiled.predict([frame]).scores[0])
    items = eager.scorer.good_items(eager.preprocessor([frame]).inputs, within=before / 4, limit=1000)
    eager.scorer.add_memory(items)
    compiled.scorer.add_memory(items)
    got, want = (float(m.predict([frame]).scores[0]) for m in (compiled, eager))
    assert compiled.scorer.bank is not None and compiled.scorer.bank.graph is not None  # still the one-graph path
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    assert got < before / 2


def test_a_grown_bank_scores_only_once_swapped_in(piped_patchcore: tuple[AnomalyModel, Path]) -> None:
    """grow() builds the new bank (index, neighbours, compiled graph) beside the one in use: the model scores as before
    until the swap, and a swap onto a bank that changed meanwhile is refused rather than dropping that change."""
    model = _load(piped_patchcore[1], "openvino")
    frame = read_image(DEFECT)
    before = float(model.predict([frame]).scores[0])
    items = model.scorer.good_items(model.preprocessor([frame]).inputs, within=before / 4, limit=1000)
    swap, other = model.scorer.grow(items), model.scorer.grow(items[:1])
    assert float(model.predict([frame]).scores[0]) == before
    swap()
    assert float(model.predict([frame]).scores[0]) <= before / 4
    with pytest.raises(RuntimeError, match="memory bank changed"):
        other()
