"""Student-teacher scorers: Uninformed Students (multi-scale patch nets) and EfficientAD-S (PDN + autoencoder)."""

from stream_ad.scorers.student_teacher.efficientad import EfficientAD, EfficientADParams
from stream_ad.scorers.student_teacher.uninformed import UninformedStudents, UninformedStudentsParams

__all__ = ["EfficientAD", "EfficientADParams", "UninformedStudents", "UninformedStudentsParams"]
