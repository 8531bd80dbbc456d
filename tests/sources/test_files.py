"""Sources as cameras, in-process: a folder and a video file at a fixed fps, once or looped, resuming after a
restart, and a file that cannot be decoded yielding a decode error instead of stopping the camera."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from stream_ad.frames import Capture
from stream_ad.settings import SourceSettings
from stream_ad.sources import Pacer, open_source
from stream_ad.sources.folder import FolderSource
from stream_ad.sources.video import VideoSource
from tests.conftest import PIPED

CATEGORY = PIPED / "PA_BDP01_TL"


def make_video(path: Path, frames: list[np.ndarray], fps: int = 10, options: dict[str, str] | None = None) -> Path:
    """An H.264 mp4 of the frames (PyAV's bundled libx264); `options`: the muxer's (movflags ...)."""
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(fps)}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _images(n: int) -> list[np.ndarray]:
    from stream_ad.data import read_image

    return [read_image(p) for p in sorted((CATEGORY / "test" / "good").glob("*.png"))[:n]]


def test_pacer_keeps_the_camera_schedule() -> None:
    pacer = Pacer(50.0)
    start = time.monotonic()
    for i in range(25):
        pacer.wait()
        if i == 5:
            time.sleep(0.1)  # a slow reader catches up instead of shifting every later frame
    assert 0.45 <= time.monotonic() - start < 0.8


def test_folder_source_once_looped_and_resumed(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    (folder / "good").mkdir(parents=True)
    (folder / "defect").mkdir()
    for p in sorted((CATEGORY / "test" / "good").glob("*.png"))[:3]:
        (folder / "good" / p.name).symlink_to(p)
    (folder / "defect" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    src = FolderSource(folder, fps=100.0, loop=False)
    start = time.monotonic()
    items = list(src)
    assert len(items) == 4 and all(isinstance(c, Capture) for c in items)
    assert time.monotonic() - start >= 0.025  # paced at 100 fps
    broken = [c for c in items if c.error]
    assert len(broken) == 1 and "cannot decode image" in broken[0].error and broken[0].image is None
    assert broken[0].meta["label"] == "defect"
    good = [c for c in items if not c.error]
    assert all(c.image.shape == (128, 128, 3) and c.image.dtype == np.uint8 for c in good)
    assert [c.t_capture for c in items] == sorted(c.t_capture for c in items)
    looped = []
    for c in FolderSource(folder, fps=None, loop=True, preload=True):
        looped.append(c.meta["path"])
        if len(looped) == 10:
            break
    assert looped[:4] == looped[4:8]
    resumed = [c.meta["path"] for c in FolderSource(folder, fps=None, loop=False, skip=2)]
    assert resumed == [c.meta["path"] for c in items][2:]


def test_folder_source_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no_such \(setting pipeline\.source\.path\)"):
        FolderSource(tmp_path / "no_such", 10.0, False)
    # The pipeline's default folder (data.root/test) is named by the setting it came from.
    with pytest.raises(FileNotFoundError, match=r"no_such \(setting data\.root\)"):
        open_source(SourceSettings(kind="folder"), tmp_path / "no_such", default_setting="data.root")


def test_video_source_at_a_fixed_fps_once_and_looped(tmp_path: Path) -> None:
    frames = _images(12)
    video = make_video(tmp_path / "cam.mp4", frames)
    src = VideoSource(video, fps=40.0, loop=False)
    start = time.monotonic()
    got = list(src)
    took = time.monotonic() - start
    assert len(got) == 12 and all(c.error is None for c in got)
    assert 11 / 40.0 - 0.02 <= took < 2.0
    # H.264 is lossy, but each decoded frame is the image it was made from.
    diffs = [np.abs(c.image.astype(int) - f.astype(int)).mean() for c, f in zip(got, frames)]
    assert max(diffs) < 12
    looped = []
    for c in VideoSource(video, fps=None, loop=True):
        looped.append(c)
        if len(looped) == 30:
            break
    assert len(looped) == 30
    assert VideoSource(video, fps=None, loop=False).fps == pytest.approx(10.0)  # the file's own rate by default
    assert len(list(VideoSource(video, fps=None, loop=False, skip=5))) == 7
