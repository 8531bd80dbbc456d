"""PatchCore: a memory bank of locally aware patch features, searched with faiss."""

from stream_ad.scorers.patchcore.model import PatchCore, PatchCoreParams

__all__ = ["PatchCore", "PatchCoreParams"]
