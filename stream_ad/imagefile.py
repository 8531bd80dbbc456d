"""A user's image file, decoded safely: its pixel count is read from the header (Pillow reads only the header until
asked for pixels) and checked against a limit before OpenCV decodes it, so a decompression bomb (a tiny file whose
header claims 20000 x 20000) is refused without allocating its pixels. Every failure, whatever the decoder raised,
is one ImageFileError naming the file.

Imports nothing of stream_ad and never torch: the sources (one process per camera) and stream_ad.data share it.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# The files read as images wherever a folder of them is given (a camera folder, --good, a data set).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

# Pillow only reads headers here (OpenCV decodes): its own bomb guard (a warning past 89 MP, an error past 179 MP)
# would override the setting, which decode_image checks itself before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None


class ImageFileError(ValueError):
    """An image file that is not read: unreadable, not an image, damaged, or over the pixel limit."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header, the file's structure checked without decoding pixels (Pillow's verify: a
    PNG's chunk lengths and checksums); raises what Pillow raises for a file it cannot identify or verify. Found by
    fuzzing: one flipped bit in a 2 KB PNG's IDAT length made OpenCV allocate the 1 GB the length claimed."""
    with Image.open(io.BytesIO(data)) as img:
        size = img.size
        img.verify()
    return size


def decode_image(data: bytes, name: str, max_pixels: int, grey: bool = False) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an encoded image (grey ones replicated to three channels), or with `grey` (H, W) uint8;
    `name` is what the error names (the file). Raises ImageFileError, never anything else."""
    try:
        width, height = image_size(data)
    except Exception as exc:  # noqa: BLE001 - any header the reader rejects is a damaged or foreign file
        raise ImageFileError(
            f"cannot decode image {name}: unreadable header ({exc.__class__.__name__}: {exc})"
        ) from None
    if width * height > max_pixels:
        raise ImageFileError(f"image {name} refused: its header says {width} x {height} = {width * height} pixels, "
                             f"over the limit of {max_pixels} (setting pipeline.source.max_image_pixels)")
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    except Exception as exc:  # noqa: BLE001 - cv2.error (a header OpenCV reads otherwise) and the like
        raise ImageFileError(f"cannot decode image {name}: {exc.__class__.__name__}: {exc}") from None
    if img is None:
        raise ImageFileError(f"cannot decode image {name} (truncated, damaged or not an image)")
    return img if grey else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def images_under(folder: Path) -> list[Path]:
    """The image files under `folder`, recursively, sorted; none when there are none."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image_file(path: Path, max_pixels: int, grey: bool = False) -> np.ndarray:
    """decode_image of a file; a file that cannot be read (missing, a folder, no permission) is an ImageFileError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageFileError(f"cannot read image {path}: {exc.strerror or exc}") from None
    return decode_image(data, str(path), max_pixels, grey)
