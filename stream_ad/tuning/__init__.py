"""`stream-ad tune`: choose a line's preprocessing and PatchCore's coreset ratio from its own good images.

candidates.py  the grid of configurations tried, from the frames' size
validation.py  held-out good images plus labelled defects, else synthetic ones (stream_ad.data.synthetic)
search.py      fit and score each candidate within a time budget; rank them
report.py      the candidates' figures as a table, JSON and Markdown
"""

from stream_ad.tuning.candidates import Candidate, candidate_grid, settings_for, with_candidate
from stream_ad.tuning.report import write_reports
from stream_ad.tuning.search import Figures, Outcome, Trial, rank, search
from stream_ad.tuning.validation import ValidationSet, labelled_validation, synthetic_validation

__all__ = [
    "Candidate", "Figures", "Outcome", "Trial", "ValidationSet", "candidate_grid", "labelled_validation", "rank",
    "search", "settings_for", "synthetic_validation", "with_candidate", "write_reports",
]
