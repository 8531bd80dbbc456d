"""Frames and data sets: the MVTec AD layout reader, the geometry and preprocessing shared by fitting and serving,
image files as preprocessed batches."""

from stream_ad.data.batches import ImageBatches
from stream_ad.data.geometry import Placement, Prepared
from stream_ad.data.mvtec import DatasetError, MVTecCategory, Sample, read_image, read_mask
from stream_ad.data.preprocess import Preprocessor

__all__ = [
    "DatasetError", "ImageBatches", "MVTecCategory", "Placement", "Prepared", "Preprocessor", "Sample", "read_image",
    "read_mask",
]
