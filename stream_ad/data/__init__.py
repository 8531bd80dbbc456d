"""Data sets in the MVTec AD layout and the frame preprocessing shared by fitting and serving."""

from stream_ad.data.mvtec import DatasetError, MVTecCategory, Sample, read_image, read_mask
from stream_ad.data.preprocess import Prepared, Preprocessor

__all__ = ["DatasetError", "MVTecCategory", "Prepared", "Preprocessor", "Sample", "read_image", "read_mask"]
