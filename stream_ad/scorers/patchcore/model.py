"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Locally aware patch features from two mid-level backbone taps -> greedy coreset memory bank -> exact kNN (faiss or
torch, stream_ad.scorers.components.knn) with the bank resident on the scorer's device.
Image score: the largest patch distance, reweighted by how isolated its nearest memory item is (paper, Eq. 7).
Map: patch distances, upsampled to the input and Gaussian-smoothed (sigma 4).
With runtime.accelerate openvino the whole scoring path runs as one OpenVINO graph (graph.ScoringGraph).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from tqdm import tqdm

from stream_ad.backbones import Backbone, load_backbone
from stream_ad.runtime.accelerate import Features, OpenVino, accelerate_backbone, openvino_head
from stream_ad.scorers.base import (
    FitBatches,
    NotFittedError,
    Scorer,
    ScorerContext,
    ScorerParams,
    Scores,
)
from stream_ad.scorers.components.coreset import greedy_coreset
from stream_ad.scorers.components.knn import KnnIndex, build_knn, grown_neighbours
from stream_ad.scorers.components.sample import RowSample
from stream_ad.scorers.patchcore.graph import (
    FLOAT32_SEARCH_GROUPS,
    QUANTISED_SEARCH_GROUPS,
    ScoringGraph,
    ScoringHead,
    as_queries,
    bank_tensors,
    patch_embedding,
    scores_from_neighbours,
)
from stream_ad.scorers.registry import register_scorer

log = logging.getLogger(__name__)


class PatchCoreParams(ScorerParams):
    # Memory bank size as a share of all training patches.
    coreset_ratio: float = Field(0.01, gt=0.0, le=1.0)
    # Training patches the coreset is chosen among: a uniform random sample of at most this many (None: all, as
    # every fit did before this setting, so refitting old settings gives the same bank). The greedy coreset's time
    # grows with patches x centres and its memory with patches: tile mode at native resolution yields millions of
    # patches (300 frames of 640 x 640 at tile 224: 3.8 M). Figures: README, "Resize, letterbox, aspect or tile?".
    coreset_pool: int | None = Field(None, ge=1)
    # Dimension of the random projection the coreset search runs in (the memory bank keeps full features).
    projection_dim: int = Field(128, ge=8)
    # Neighbourhood aggregation: average pooling over p x p patches of each tap.
    patch_size: int = Field(3, ge=1)
    # Adaptive average pooling of the concatenated features to this many channels; None keeps them all.
    embedding_dim: int | None = Field(None, ge=8)
    # b in the paper's reweighting: nearest memory items of the best match used to judge its isolation.
    num_neighbors: int = Field(9, ge=1)
    blur_sigma: float = Field(4.0, ge=0.0)
    seed: int = 0
    # Nearest-neighbour backend; all give the same neighbours (ties aside). auto: see knn.choose_backend.
    knn: Literal["auto", "faiss", "torch"] = "auto"

    scoring = frozenset({"patch_size", "embedding_dim", "num_neighbors", "blur_sigma"})
    # The coreset's size, projection and seed shape the memory bank, which the artefact holds; knn only how fast.
    not_scoring = frozenset({"coreset_ratio", "coreset_pool", "projection_dim", "seed", "knn"})


@dataclass(frozen=True)
class MemoryBank:
    """A fitted bank and everything built from it, swapped in as one: a batch scores with one bank, never half of
    two."""
    memory: torch.Tensor  # (M, D) float32 on the scorer's device
    index: KnnIndex
    neighbours: torch.Tensor  # (M, b) nearest memory items of each memory item
    graph: OpenVino | None  # runtime.accelerate openvino: the whole scoring path in one graph, the bank in it


@register_scorer("patchcore")
class PatchCore(Scorer):
    Params = PatchCoreParams
    params: PatchCoreParams
    nonnegative_scores = True  # distances
    teachable = True  # a taught frame's patches join the memory bank

    def __init__(self, params: PatchCoreParams, context: ScorerContext) -> None:
        super().__init__(params, context)
        self.backbone: Backbone = load_backbone(context.backbone, context.device)
        self.features: Features = accelerate_backbone(
            self.backbone, context.device, context.input_size, context.accelerate
        )
        self.bank: MemoryBank | None = None

    @property
    def memory(self) -> torch.Tensor | None:
        return None if self.bank is None else self.bank.memory

    def _fitted_bank(self) -> MemoryBank:
        if self.bank is None:
            raise NotFittedError("PatchCore has no memory bank: fit() or load it first")
        return self.bank

    def backbone_identity(self) -> dict[str, str]:
        return self.backbone.identity()

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features (B, D, h, w) at the first tap's resolution."""
        taps = [t.to(batch.device) for t in self.features(batch)]
        return patch_embedding(taps, self.params.patch_size, self.params.embedding_dim)

    def fit(self, batches: FitBatches) -> None:
        p = self.params
        pool = RowSample(p.coreset_pool, p.seed)
        for batch in tqdm(batches, desc="features", unit="batch", mininterval=1.0):
            # A batch of frames is many more inputs in tile mode (16 per 640 x 640 frame at tile 224): the backbone
            # takes them a served batch at a time, which bounds its activations (about 10 MB per 224 x 224 input).
            for inputs in batch.split(self.context.accelerate.max_batch):
                pool.add(as_queries(self.embed(inputs.to(self.context.device))).cpu())
        features = pool.rows()
        idx = greedy_coreset(features, p.coreset_ratio, p.projection_dim, p.seed, total=pool.seen)
        self.bank = self._build_bank(features[idx].contiguous())

    def _build_bank(self, memory: torch.Tensor, grown_from: MemoryBank | None = None) -> MemoryBank:
        """The index, each item's neighbours and the OpenVINO graph of `memory`; reads nothing of the bank in use but
        `grown_from`'s memory and neighbours (never changed in place), so it may run while batches score with that
        one. `memory` grown from that bank (its rows first) keeps their neighbours, changed only where an added item
        is nearer (knn.grown_neighbours)."""
        memory = memory.to(self.context.device)
        index = build_knn(memory, self.params.knn)
        k = min(self.params.num_neighbors, memory.shape[0])
        if grown_from is not None and grown_from.neighbours.shape[1] == k:
            neighbours = grown_neighbours(memory, grown_from.neighbours, index)
        else:  # a fresh bank, or one that had fewer than num_neighbors items: each item's k nearest searched in full
            neighbours = index.search(memory, k)[1]
        graph = self._openvino_graph(memory, neighbours) if self.features.path == "openvino" else None
        return MemoryBank(memory, index, neighbours, graph)

    def scoring_graph(self, quantised: bool = False) -> ScoringGraph:
        """Backbone, kNN over the memory bank, reweighting and map as one module (graph.ScoringGraph): what
        `stream-ad export` writes, its bank searched in more groups where its search is to be quantised. In the
        process, runtime.accelerate openvino compiles the same math as the backbone's IR joined to
        graph.ScoringHead's, the bank put in (_openvino_graph)."""
        bank, p = self._fitted_bank(), self.params
        groups = QUANTISED_SEARCH_GROUPS if quantised else FLOAT32_SEARCH_GROUPS
        return ScoringGraph(self.backbone, bank.memory, bank.neighbours, p.patch_size, p.embedding_dim, p.blur_sigma,
                            groups)

    def graph_constants(self) -> dict[str, str]:
        """ScoringGraph's buffers, as the OpenVINO converter names them. The converter also folds the bank into two
        unnamed constants (the rows' squared norms (1, M), a broadcast copy (1, M, D)): a changed bank (patches taught
        as good) reaches a compiled graph by exporting again, never by editing constants in the IR."""
        return {
            "self.memory": "the memory bank (M, D) float32: the coreset of good patch features, its last item "
                           "repeated to a multiple of the search's groups",
            "self.scaled": "-2 x the memory bank (M, D) float32, for the search matmul",
            "self.neighbours": "each bank item's b nearest items (M, b) int64, itself first (the reweighting)",
        }

    def int8_search_constants(self) -> tuple[str, ...]:
        """The search matmul's bank: it only picks each patch's candidates, whose distances the graph recomputes in
        float32 (graph.ScoringGraph)."""
        return ("self.scaled",)

    def images_per_call(self) -> int:
        """One: the graph holds each call's whole (patches x memory) distance block, and is compiled for a static
        batch of one, which lets OpenVINO pick its faster kernels (runtime.openvino.compile_for_cpu). Batches lose
        nothing by it: the distance matmul runs at the core's fp32 peak whatever the batch (8.8 ms an image at
        batch 1, 9.9 at batch 8, one core), and Requests spreads a batch's images over the requests."""
        return 1

    def _openvino_graph(self, memory: torch.Tensor, neighbours: torch.Tensor) -> OpenVino:
        """The whole scoring path as one OpenVINO graph (stream_ad.scorers.patchcore.graph says why), the bank put in
        as constants."""
        p = self.params
        graph = {"scorer": "patchcore", **p.model_dump(include={"patch_size", "embedding_dim", "blur_sigma"})}
        head = ScoringHead(p.patch_size, p.embedding_dim, p.blur_sigma, self.context.input_size)
        bank = bank_tensors(memory.cpu(), neighbours.cpu(), FLOAT32_SEARCH_GROUPS)
        compiled = openvino_head(head, bank, self.backbone, self.context.input_size, self.context.accelerate, graph,
                                 batch=self.images_per_call())
        log.info("PatchCore scores through one OpenVINO graph (backbone, kNN over %d items, reweighting, map), "
                 "one image per call", memory.shape[0])
        return compiled

    @torch.inference_mode()
    def good_items(self, batch: torch.Tensor, within: float, limit: int) -> torch.Tensor:
        """The batch's patches join the bank farthest first (greedy k-center on the patches' distances to the bank),
        until every patch lies within `within` of it: the image score (its worst patch's distance, reweighted down)
        then does too. Few items suffice; a frame's other patches mostly lie near those added."""
        bank = self._fitted_bank()
        queries = as_queries(self.embed(batch.to(self.context.device))).to(bank.memory.device)
        nearest = bank.index.search(queries, 1)[1].view(-1)
        dist = torch.linalg.vector_norm(queries - bank.memory.index_select(0, nearest), dim=1)
        chosen: list[int] = []
        while len(chosen) < limit and float(dist.max()) > within:
            far = int(dist.argmax())
            chosen.append(far)
            dist = torch.minimum(dist, torch.linalg.vector_norm(queries - queries[far], dim=1))
        return queries[chosen].cpu()

    def grow(self, items: torch.Tensor) -> Callable[[], None]:
        # The index and an OpenVINO graph (the bank is a constant in it) are built anew, the neighbours grown from the
        # old bank's: nothing scores with the old bank once the swap has run.
        old = self._fitted_bank()
        new = self._build_bank(torch.cat([old.memory.cpu(), items.float().cpu()]).contiguous(), grown_from=old)

        def swap() -> None:
            if self.bank is not old:
                raise RuntimeError("PatchCore's memory bank changed while a grown one was being built: grow again")
            self.bank = new
        return swap

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.bank is None:
            raise NotFittedError("PatchCore has no memory bank: fit() it first")
        return {"memory_bank": self.bank.memory.cpu()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.bank = self._build_bank(tensors["memory_bank"].float().contiguous())

    def parallel_calls(self) -> int:
        return 1 if self.bank is None or self.bank.graph is None else self.bank.graph.requests.streams

    @torch.inference_mode()
    def score(self, batch: torch.Tensor) -> Scores:
        bank = self._fitted_bank()  # once: a swap between here and the return leaves this batch on one bank
        if bank.graph is not None:
            image, maps = bank.graph(batch, self.images_per_call())
            return Scores(image=image, maps=maps)
        emb = self.embed(batch.to(self.context.device))
        b, _, h, w = emb.shape
        queries = as_queries(emb).to(bank.memory.device)
        nn_idx = bank.index.search(queries, 1)[1].view(-1)
        image, maps = scores_from_neighbours(queries, nn_idx, bank.memory, bank.neighbours, (b, h, w),
                                             (batch.shape[-2], batch.shape[-1]), self.params.blur_sigma)
        return Scores(image=image.to(batch.device), maps=maps.to(batch.device))
