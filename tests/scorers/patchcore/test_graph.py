"""PatchCore's scoring graph against the step-by-step math: the grouped search finds every patch's nearest bank item
whatever the bank's size (not a multiple of the groups, or fewer items than groups)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stream_ad.scorers.patchcore.graph import (
    FLOAT32_SEARCH_GROUPS,
    QUANTISED_SEARCH_GROUPS,
    ScoringGraph,
    as_queries,
    scores_from_neighbours,
)


class Taps(nn.Module):
    """A backbone whose one tap is its input: the graph's queries are then the input's pixels."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


@pytest.mark.parametrize("groups", [FLOAT32_SEARCH_GROUPS, QUANTISED_SEARCH_GROUPS])
@pytest.mark.parametrize("items", [3, QUANTISED_SEARCH_GROUPS, 4 * QUANTISED_SEARCH_GROUPS + 5, 301])
def test_the_grouped_search_finds_each_patch_s_nearest_item(items: int, groups: int) -> None:
    g = torch.Generator().manual_seed(items)
    depth, side, neighbours = 16, 12, min(3, items)
    memory = torch.randn(items, depth, generator=g)
    x = torch.randn(2, depth, side, side, generator=g)
    x[0, :, 0, 0] = memory[-1]  # on the last item, the one the padding repeats
    x[1, :, 5, 7] = memory[0]
    bank_d = torch.cdist(memory.double(), memory.double())
    near = bank_d.topk(neighbours, largest=False).indices  # itself first
    graph = ScoringGraph(Taps(), memory, near, patch_size=1, embedding_dim=None, blur_sigma=1.0, groups=groups)
    with torch.inference_mode():
        got_scores, got_maps = graph(x)
        queries = as_queries(x)
        nearest = torch.cdist(queries.double(), memory.double()).argmin(dim=1)  # exact, in float64
        want_scores, want_maps = scores_from_neighbours(queries, nearest, memory, near, (2, side, side),
                                                        (side, side), 1.0)
    torch.testing.assert_close(got_maps, want_maps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_scores, want_scores, rtol=1e-5, atol=1e-5)
    assert graph.memory.shape[0] % groups == 0 and graph.memory.shape[0] - items < groups
