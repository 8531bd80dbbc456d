"""Anomaly scorers: the interface (base.py), the registry (registry.py), shared parts (components/), one folder
per method. Importing this package registers every built-in method."""

# Registration happens on import; a new method adds its import here and nothing else changes.
from stream_ad.scorers import ensemble as _ensemble  # noqa: E402,F401
from stream_ad.scorers import padim as _padim  # noqa: E402,F401
from stream_ad.scorers import patchcore as _patchcore  # noqa: E402,F401
from stream_ad.scorers import reconstruction as _reconstruction  # noqa: E402,F401
from stream_ad.scorers import student_teacher as _student_teacher  # noqa: E402,F401
from stream_ad.scorers.base import (
    FitBatches,
    NotExportable,
    NotFittedError,
    Scorer,
    ScorerContext,
    ScorerParams,
    Scores,
)
from stream_ad.scorers.registry import available_scorers, build_scorer, register_scorer, scorer_class, scorer_params

__all__ = [
    "FitBatches",
    "NotExportable",
    "NotFittedError",
    "Scorer",
    "ScorerContext",
    "ScorerParams",
    "Scores",
    "available_scorers",
    "build_scorer",
    "register_scorer",
    "scorer_class",
    "scorer_params",
]
