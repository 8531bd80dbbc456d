"""A folder of images as a camera: sorted (recursively), at a fixed fps, once or looped. A file that cannot be read,
whatever the reason (damaged, not an image, over the pixel limit), is a decode error for that file, and the camera
moves on to the next."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stream_ad.errors import located
from stream_ad.frames import Capture
from stream_ad.imagefile import (
    IMAGE_SUFFIXES,
    ImageFileError,
    images_under,
    read_image_file,
)
from stream_ad.settings import MAX_IMAGE_PIXELS
from stream_ad.sources.base import Camera, Pacer


def list_images(folder: Path, setting: str = "pipeline.source.path") -> list[Path]:
    """The images under `folder`; FileNotFoundError naming `setting`, the setting the folder came from."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {located(folder)} (setting {setting})")
    paths = images_under(folder)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder} (setting {setting})")
    return paths


def _read(path: Path, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    try:
        return read_image_file(path, max_pixels), None
    except ImageFileError as exc:
        return None, str(exc)


class FolderSource(Camera):
    def __init__(self, folder: Path, fps: float | None, loop: bool, preload: bool = False, skip: int = 0,
                 max_pixels: int = MAX_IMAGE_PIXELS, setting: str = "pipeline.source.path") -> None:
        self.folder = Path(folder)
        self.paths = list_images(self.folder, setting)
        self.fps = fps
        self.loop = loop
        self.skip = skip
        self.max_pixels = max_pixels
        self._cache = {p: _read(p, max_pixels) for p in self.paths} if preload else None

    def _meta(self, path: Path) -> dict[str, str]:
        rel = path.relative_to(self.folder)
        # MVTec layout: test/<defect>/x.png -> the folder names the ground truth (for the demo's summary).
        return {"path": str(path), "label": rel.parts[0] if len(rel.parts) > 1 else ""}

    def __iter__(self) -> Iterator[Capture]:
        pacer = Pacer(self.fps)
        n = len(self.paths)
        index = self.skip
        if not self.loop and index >= n:
            return
        while True:
            path = self.paths[index % n]
            pacer.wait()
            t_capture = time.time()
            img, error = self._cache[path] if self._cache is not None else _read(path, self.max_pixels)
            yield Capture(img, t_capture, self._meta(path), error)
            index += 1
            if not self.loop and index >= n:
                return
