"""The one seam every anomaly-detection method plugs into.

A scorer sees preprocessed tensors (B, 3, H, W), already normalised for its backbone. It is fitted on good images
only, scores a batch into image scores (B,) and anomaly maps (B, H, W) at the input's size, and round-trips through
plain tensors + JSON params (no pickled objects), so a saved model loads exactly as it was fitted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from pydantic import BaseModel, ConfigDict

from stream_ad.runtime.accelerate import AccelerateSpec
from stream_ad.settings import BackboneSettings


class FitBatches(Protocol):
    """Good-image batches (B, 3, H, W); re-iterable (one pass per epoch) and sized (batches per pass)."""

    def __iter__(self) -> Iterator[torch.Tensor]: ...

    def __len__(self) -> int: ...


class ScorerParams(BaseModel):
    """Base of each method's settings model (`scorer.params` in a pipeline YAML).

    Each method sorts every one of its params into `scoring` (they change what a fitted model computes from a frame:
    a pipeline file serving the artefact may not give another value) or `not_scoring` (how it is fitted, or a
    backend with the same result: a pipeline file may give anything). Both are required and must cover the fields
    exactly, checked as the class is defined: a new param or method cannot pass unsorted.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    scoring: ClassVar[frozenset[str]]
    not_scoring: ClassVar[frozenset[str]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        missing = [name for name in ("scoring", "not_scoring") if not hasattr(cls, name)]
        if missing:
            raise TypeError(f"{cls.__name__} must declare {' and '.join(missing)}: which params change what a "
                            "fitted model computes (scoring) and which do not (not_scoring)")
        fields = set(cls.model_fields)
        problems = {
            "in both scoring and not_scoring": cls.scoring & cls.not_scoring,
            "in neither scoring nor not_scoring": fields - cls.scoring - cls.not_scoring,
            "declared but not params": (cls.scoring | cls.not_scoring) - fields,
        }
        wrong = [f"{what}: {', '.join(sorted(names))}" for what, names in problems.items() if names]
        if wrong:
            raise TypeError(f"{cls.__name__}: " + "; ".join(wrong))


@dataclass(frozen=True)
class ScorerContext:
    """What a scorer may need from the surrounding model besides its own params."""

    backbone: BackboneSettings
    device: torch.device
    input_size: int  # side of the square tensors fit() and score() receive
    seed: int = 0  # methods that train seed from it (runtime.seed)
    checkpoint_dir: Path | None = None  # where training methods keep resumable checkpoints (None: none kept)
    accelerate: AccelerateSpec = AccelerateSpec()  # how a pretrained backbone runs (runtime.accelerate); eager here


@dataclass
class Scores:
    image: torch.Tensor  # (B,) float32, higher = more anomalous
    maps: torch.Tensor  # (B, H, W) float32 at the input's spatial size


class NotFittedError(RuntimeError):
    pass


class NotExportable(RuntimeError):
    """A scorer whose scoring cannot be one forward graph (it optimises each image at test time, say): the message
    says why and what to do instead."""


class _ScoreModule(torch.nn.Module):
    """A scorer's score() as a module for a graph exporter: tensor operations only are traced, so it is exact for
    methods whose score is nothing else (networks, maps, blur) and runs eagerly."""

    def __init__(self, scorer: Scorer) -> None:
        super().__init__()
        # The scorer's networks, owned here too: the tracer takes the weights of the module it traces as weights
        # (anything else must be a constant, and trainable tensors cannot be).
        self.networks = torch.nn.ModuleList(
            m for value in vars(scorer).values() for m in (value.values() if isinstance(value, dict) else [value])
            if isinstance(m, torch.nn.Module))
        self.scorer = [scorer]  # in a list: not a submodule of its own

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.scorer[0].score(x)
        return out.image, out.maps


class Scorer(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[ScorerParams]]
    # Whether every score is >= 0 (distances, errors): a negative threshold then alarms on every frame.
    nonnegative_scores: ClassVar[bool] = False
    # Whether good frames can join the fitted model without a refit (good_items, grow: memory banks); else teaching
    # queues the frame for the next fit.
    teachable: ClassVar[bool] = False

    def __init__(self, params: ScorerParams, context: ScorerContext) -> None:
        self.params = params
        self.context = context

    @abstractmethod
    def fit(self, batches: FitBatches) -> None:
        """Fit on good images only."""

    @abstractmethod
    def score(self, batch: torch.Tensor) -> Scores:
        """Score a batch (B, 3, H, W) -> image scores (B,) and anomaly maps (B, H, W)."""

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything fitted, as named tensors; load_state_tensors() restores it."""

    @abstractmethod
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None: ...

    def scoring_graph(self, quantised: bool = False) -> torch.nn.Module:
        """The whole scoring path as one module, normalised inputs (B, 3, S, S) -> (image scores (B,), maps (B, S, S)),
        for `stream-ad export`: score() itself by default, right when it is tensor operations only on a scorer built
        with runtime.accelerate eager. A method that needs more overrides it, or raises NotExportable saying why.
        `quantised`: the graph is to be quantised (an INT8 export), which a method may build it otherwise for."""
        return _ScoreModule(self)

    def graph_constants(self) -> dict[str, str]:
        """The scoring graph's fitted state a user may want to find in the exported IR: constant name -> what it
        holds (none by default; networks' weights are not listed)."""
        return {}

    def int8_search_constants(self) -> tuple[str, ...]:
        """Constants of the scoring graph (graph_constants' names) whose MatMul an INT8 export may quantise: a search
        whose picks the graph rechecks in float32 (none by default: a quantised matmul's result would be the score)."""
        return ()

    def images_per_call(self) -> int:
        """Most images the scoring graph takes in one call (0: any number)."""
        return 0

    def parallel_calls(self) -> int:
        """Calls of score() that may run at once, from as many threads: more than 1 only where the whole scoring
        is one OpenVINO graph on that many requests (runtime.openvino.Requests); other paths would fight over the
        cores (torch's threads) or change state as they score."""
        return 1

    def good_items(self, batch: torch.Tensor, within: float, limit: int) -> torch.Tensor:
        """Teach (teachable scorers), first step: the memory items (N, D), at most `limit`, that good images
        (B, 3, H, W) the model flagged would add so that each of their patches scores within `within`. Changes
        nothing: grow() or add_memory() adds them, and a saved teaching keeps them to replay."""
        raise NotImplementedError(f"{type(self).__name__} learns only by fitting: a refit is needed")

    def grow(self, items: torch.Tensor) -> Callable[[], None]:
        """The fitted state with `items` added, built while this one goes on scoring (the slow part: an index, a
        compiled graph); the call returned swaps it in at once. Swapping is not safe while score() runs: the caller
        holds the model alone for that (stream_ad.pipeline.model_lock)."""
        raise NotImplementedError(f"{type(self).__name__} learns only by fitting: a refit is needed")

    def add_memory(self, items: torch.Tensor) -> None:
        """Add items good_items returned (a teaching, or a saved one replayed) to the fitted state."""
        self.grow(items)()

    def backbone_identity(self) -> dict[str, str] | None:
        """Name and weights sha256 of the pretrained network the scorer depends on, or None if it has none."""
        return None
