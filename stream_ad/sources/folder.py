"""A folder of images as a camera: sorted (recursively), at a fixed fps, once or looped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from stream_ad.frames import Capture
from stream_ad.sources.base import Camera, Pacer

# As stream_ad.data.folders reads them (not imported: that package loads torch, which a source does not need).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def list_images(folder: Path, setting: str = "pipeline.source.path") -> list[Path]:
    """The images under `folder`; FileNotFoundError naming `setting`, the setting the folder came from."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder} (setting {setting})")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder} (setting {setting})")
    return paths


def _read(path: Path) -> tuple[np.ndarray | None, str | None]:
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        return None, f"cannot decode image {path}"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), None


class FolderSource(Camera):
    def __init__(self, folder: Path, fps: float | None, loop: bool, preload: bool = False, skip: int = 0,
                 setting: str = "pipeline.source.path") -> None:
        self.folder = Path(folder)
        self.paths = list_images(self.folder, setting)
        self.fps = fps
        self.loop = loop
        self.skip = skip
        self._cache = {p: _read(p) for p in self.paths} if preload else None

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
            img, error = self._cache[path] if self._cache is not None else _read(path)
            yield Capture(img, t_capture, self._meta(path), error)
            index += 1
            if not self.loop and index >= n:
                return
