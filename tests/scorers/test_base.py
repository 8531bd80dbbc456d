"""The scorer interface: every method sorts each of its params into scoring or not_scoring (what a saved model's
loading compares with a pipeline file), and a method that does not cannot even be defined."""

from __future__ import annotations

import pytest
from pydantic import Field

from stream_ad.scorers import ScorerParams, available_scorers, scorer_class


@pytest.mark.parametrize("method", available_scorers())
def test_every_method_sorts_each_param(method: str) -> None:
    params = scorer_class(method).Params
    assert params.scoring and not params.scoring & params.not_scoring
    assert params.scoring | params.not_scoring == set(params.model_fields)


def test_a_params_model_without_the_sorting_is_refused() -> None:
    with pytest.raises(TypeError, match="must declare scoring and not_scoring"):
        class Unsorted(ScorerParams):
            depth: int = 3

    with pytest.raises(TypeError, match="in neither scoring nor not_scoring: lr; declared but not params: epoch$"):
        class Forgotten(ScorerParams):
            depth: int = 3
            lr: float = Field(1e-3, gt=0.0)
            scoring = frozenset({"depth"})
            not_scoring = frozenset({"epoch"})
