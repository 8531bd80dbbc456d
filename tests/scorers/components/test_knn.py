"""PatchCore's kNN backends agree on real features: the torch matmul/top-k search finds faiss's neighbours."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stream_ad.data import MVTecCategory, read_image
from stream_ad.model import AnomalyModel
from stream_ad.scorers.components.knn import (
    CPU_FAISS_FROM_QUERIES,
    CpuKnn,
    FaissKnn,
    TorchKnn,
    build_knn,
    grown_neighbours,
)
from stream_ad.settings import load_settings
from tests.conftest import PIPED

CATEGORY = PIPED / "PA_BDP01_TL"
K = 9


@pytest.fixture(scope="module")
def features() -> tuple[torch.Tensor, torch.Tensor]:
    """A memory bank (every 7th training patch) and the patches of 8 test images, from the shared backbone."""
    model = AnomalyModel(load_settings(data={"root": str(CATEGORY)}, runtime={"accelerate": "eager"}))
    cat = MVTecCategory(CATEGORY)

    def patches(paths: list[Path]) -> torch.Tensor:
        emb = model.scorer.embed(model.preprocessor([read_image(p) for p in paths]).inputs)
        return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])

    memory = patches([s.path for s in cat.train()[:16]])[::7].contiguous()
    queries = patches([s.path for s in cat.test()[::8][:8]])
    return memory, queries


def exact(memory: torch.Tensor, queries: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(queries[:, None, :] - memory[idx], dim=2)


def check_same_neighbours(memory: torch.Tensor, queries: torch.Tensor, got: torch.Tensor, want: torch.Tensor) -> None:
    """The same neighbour sets, or where they differ (ties, float32 rounding of the expansion), equally near ones."""
    shared = (got[:, :, None] == want[:, None, :]).any(dim=2).float().mean()
    assert shared > 0.99, f"only {shared:.3f} of the neighbours agree"
    d_got = exact(memory, queries, got).sort(dim=1).values
    d_want = exact(memory, queries, want).sort(dim=1).values
    assert torch.allclose(d_got, d_want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [1, K])
def test_torch_matches_faiss_on_real_features(features: tuple[torch.Tensor, torch.Tensor], k: int) -> None:
    memory, queries = features
    d_faiss, i_faiss = FaissKnn(memory).search(queries, k)
    d_torch, i_torch = TorchKnn(memory).search(queries, k)
    assert i_torch.dtype == torch.int64 and i_torch.shape == (len(queries), k)
    check_same_neighbours(memory, queries, i_torch, i_faiss)
    # Squared distances by the same expansion, each in its own order among near-ties.
    assert torch.allclose(d_torch.sort(dim=1).values, d_faiss.sort(dim=1).values, rtol=1e-3, atol=1e-2)


def test_torch_search_in_small_blocks(features: tuple[torch.Tensor, torch.Tensor],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunking the queries (a bank too large for one block) changes nothing."""
    memory, queries = features
    whole = TorchKnn(memory).search(queries, K)
    monkeypatch.setattr("stream_ad.scorers.components.knn.BLOCK_ELEMENTS", memory.shape[0] * 37)
    chunked = TorchKnn(memory).search(queries, K)
    assert torch.equal(whole[1], chunked[1]) and torch.allclose(whole[0], chunked[0])


def test_auto_on_cpu_splits_by_size(features: tuple[torch.Tensor, torch.Tensor]) -> None:
    memory, queries = features
    index = build_knn(memory, "auto")
    assert isinstance(index, CpuKnn)
    small = queries[: CPU_FAISS_FROM_QUERIES - 1]
    large = queries.repeat(CPU_FAISS_FROM_QUERIES // len(queries) + 1, 1)
    assert torch.equal(index.search(small, 1)[1], TorchKnn(memory).search(small, 1)[1])
    assert torch.equal(index.search(large, 1)[1], FaissKnn(memory).search(large, 1)[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: the bank resident on the GPU")
def test_torch_on_cuda_matches_cpu_faiss(features: tuple[torch.Tensor, torch.Tensor]) -> None:
    memory, queries = features
    index = build_knn(memory.cuda(), "torch")
    d, i = index.search(queries.cuda(), K)
    assert i.device.type == "cuda"
    check_same_neighbours(memory, queries, i.cpu(), FaissKnn(memory).search(queries, K)[1])


def test_faiss_without_a_finite_distance_answers_nan_not_an_index_error(
        features: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A bank overflowing float32 (finite, so the artefact's NaN check passes it): faiss finds no neighbour (-1);
    the search answers a NaN distance to item 0, which PatchCore scores as NaN (a counted bad_score)."""
    memory, queries = features
    dist, idx = FaissKnn(memory * 1e20).search(queries[:4], 1)
    assert torch.isnan(dist).all() and (idx == 0).all()
    dist, idx = FaissKnn(memory).search(queries[:4], 1)
    assert torch.isfinite(dist).all() and (idx >= 0).all()


@pytest.mark.parametrize("added", [1, 40, 400])
def test_grown_neighbours_are_a_search_of_the_whole_grown_bank(features: tuple[torch.Tensor, torch.Tensor],
                                                               added: int) -> None:
    """A bank grown by test patches (as a teaching grows it): each item's neighbours, kept from before where no added
    item is nearer, are those of a search of the whole grown bank, and some old items did gain added ones."""
    memory, queries = features
    old = TorchKnn(memory).search(memory, K)[1]
    grown = torch.cat([memory, queries[::7][:added]])
    index = build_knn(grown, "torch")
    got = grown_neighbours(grown, old, index)
    assert got.shape == (grown.shape[0], K)
    assert (exact(grown, grown, got[:, :1]) == 0).all()  # first itself, or a duplicate of it
    check_same_neighbours(grown, grown, got, index.search(grown, K)[1])
    assert (got[: memory.shape[0]] >= memory.shape[0]).any()  # the merge ran: an added item entered an old list


def test_grown_neighbours_in_chunks_or_at_once_and_with_nothing_added(features: tuple[torch.Tensor, torch.Tensor],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranked again in chunks (a bank too large for one block) or at once: the same lists; nothing added: the old."""
    memory, queries = features
    old = TorchKnn(memory).search(memory, K)[1]
    grown = torch.cat([memory, queries[:300]])
    index = build_knn(grown, "torch")
    whole = grown_neighbours(grown, old, index)
    monkeypatch.setattr("stream_ad.scorers.components.knn.BLOCK_ELEMENTS", grown.shape[1] * 2 * K * 5)
    assert torch.equal(grown_neighbours(grown, old, index), whole)
    assert torch.equal(grown_neighbours(memory, old, index), old)  # nothing added: nothing changes
