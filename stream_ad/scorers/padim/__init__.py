"""PaDiM: a Gaussian per feature-grid position, scored by Mahalanobis distance (aligned parts)."""

from stream_ad.scorers.padim.model import Padim, PadimParams

__all__ = ["Padim", "PadimParams"]
