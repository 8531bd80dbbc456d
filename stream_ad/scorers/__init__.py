"""Scorer registry. Importing this package registers every built-in method."""

from stream_ad.scorers.base import (
    FitBatches,
    NotFittedError,
    Scorer,
    ScorerContext,
    ScorerParams,
    Scores,
    available_scorers,
    register_scorer,
    scorer_class,
)

# Registration happens on import; a new method adds its import here and nothing else changes.
from stream_ad.scorers import patchcore as _patchcore  # noqa: E402,F401
from stream_ad.scorers import student_teacher as _student_teacher  # noqa: E402,F401
from stream_ad.scorers import reconstruction as _reconstruction  # noqa: E402,F401

__all__ = [
    "FitBatches",
    "NotFittedError",
    "Scorer",
    "ScorerContext",
    "ScorerParams",
    "Scores",
    "available_scorers",
    "register_scorer",
    "scorer_class",
]
