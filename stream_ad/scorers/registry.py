"""Methods by name: register, list, build (timm's registry): it imports none of the methods.

The settings keep a method's params as a plain mapping; they are validated here, by the method's own settings model,
when the scorer is built, and an error names the dotted key (scorer.params.KEY) as the settings loader does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from stream_ad.scorers.base import Scorer, ScorerContext, ScorerParams
from stream_ad.settings import ConfigError, ScorerSettings, format_errors

_REGISTRY: dict[str, type[Scorer]] = {}
S = TypeVar("S", bound=type[Scorer])


def register_scorer(name: str) -> Callable[[S], S]:
    def deco(cls: S) -> S:
        if name in _REGISTRY:
            raise ValueError(f"scorer {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def scorer_class(name: str) -> type[Scorer]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"scorer.method: unknown scorer method {name!r}; available: {', '.join(available_scorers())}"
        ) from None


def available_scorers() -> list[str]:
    return sorted(_REGISTRY)


def scorer_params(scorer: ScorerSettings) -> ScorerParams:
    """scorer.params checked by the method's settings model; ConfigError naming scorer.params.KEY."""
    cls = scorer_class(scorer.method)
    try:
        return cls.Params.model_validate(scorer.params)
    except ValidationError as exc:
        origin = f"scorer.params of method {scorer.method!r}"
        raise ConfigError(format_errors(exc, origin, prefix="scorer.params.")) from None


def build_scorer(scorer: ScorerSettings, context: ScorerContext) -> Scorer:
    return scorer_class(scorer.method)(scorer_params(scorer), context)
