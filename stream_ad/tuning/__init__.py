"""`stream-ad tune`: choose a line's preprocessing, method, PatchCore's coreset ratio and the feature taps from its own
good images.

candidates.py  the grid of configurations tried, from the frames' size and the backbone
validation.py  held-out good images plus labelled defects, else synthetic ones (stream_ad.data.synthetic)
search.py      fit and score each candidate within a time budget; keep the default unless one beats it
guard.py       whether a candidate beats the default beyond the validation set's noise (a paired bootstrap of
               image AUROC, or of pixel AUROC where image AUROC saturates)
report.py      the candidates' figures as a table, JSON and Markdown
"""

from stream_ad.tuning.candidates import (
    Candidate,
    candidate_grid,
    default_candidate,
    line_grid,
    settings_for,
    tap_candidates,
    taps_note,
    with_candidate,
    with_default,
)
from stream_ad.tuning.guard import SATURATED, Interval, PixelHistograms, intervals_against_default
from stream_ad.tuning.report import write_reports
from stream_ad.tuning.search import Figures, Outcome, RankedOn, Trial, rank, search
from stream_ad.tuning.validation import ValidationSet, labelled_validation, saturation_note, synthetic_validation

__all__ = [
    "SATURATED", "Candidate", "Figures", "Interval", "Outcome", "PixelHistograms", "RankedOn", "Trial",
    "ValidationSet", "candidate_grid", "default_candidate", "intervals_against_default", "labelled_validation",
    "line_grid", "rank", "saturation_note", "search", "settings_for", "synthetic_validation", "tap_candidates",
    "taps_note", "with_candidate", "with_default", "write_reports",
]
