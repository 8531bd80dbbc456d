"""Frames and data sets: plain folders of images and the MVTec AD layout read through them, the geometry and
preprocessing shared by fitting and serving, image files as preprocessed batches."""

from stream_ad.data.batches import ImageBatches
from stream_ad.data.folders import (
    DatasetError,
    GoodFolder,
    LabelledImages,
    Layout,
    Sample,
    folder_test_set,
    good_folder,
    image_paths,
    read_image,
    read_mask,
)
from stream_ad.data.mvtec import MVTecCategory
from stream_ad.data.preprocess import Preprocessor
from stream_ad.geometry import Placement, Prepared

__all__ = [
    "DatasetError", "GoodFolder", "ImageBatches", "LabelledImages", "Layout", "MVTecCategory", "Placement", "Prepared",
    "Preprocessor", "Sample", "folder_test_set", "good_folder", "image_paths", "read_image", "read_mask",
]
