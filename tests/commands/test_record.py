"""`stream-ad record`: frames of the pipeline's configured source, exactly as the source stage receives them, saved
as PNG with an index; fewer frames than asked is a clear message, an existing recording is never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stream_ad.cli import main
from stream_ad.data import read_image
from stream_ad.settings import SourceSettings
from stream_ad.sources import open_source
from tests.sources.test_files import CATEGORY, make_video


def _pipeline(tmp_path: Path, **source: object) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump({"data": {"root": str(CATEGORY)}, "output_dir": str(tmp_path / "runs"),
                                    "pipeline": {"source": {"camera": "line7", **source}}}))
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An H.264 video of good parts: lossy, so its decoded frames differ from the stills it was made of."""
    stills = [read_image(p) for p in sorted((CATEGORY / "test" / "good").glob("*.png"))[:8]]
    return make_video(tmp_path_factory.mktemp("video") / "line.mp4", stills, fps=25)


def test_recorded_frames_are_the_decoded_camera_frames_bit_for_bit(video: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _pipeline(tmp_path, kind="video", path=str(video), fps=100)
    out = tmp_path / "recorded"
    assert main(["record", str(cfg), "--frames", "6", "--out", str(out)]) == 0
    assert "recorded 6 frames" in capsys.readouterr().out
    # What the source stage would receive from the same configured source.
    expected = [c.image for c, _ in zip(open_source(SourceSettings(kind="video", path=video, fps=None), Path()),
                                        range(6), strict=False)]
    index = json.loads((out / "index.json").read_text())
    assert index["source"] == {"kind": "video", "camera": "line7"}
    assert index["frames"] == index["frames_wanted"] == 6 and index["frame_shape"] == list(expected[0].shape)
    files = sorted(out.glob("*.png"))
    assert [e["file"] for e in index["entries"]] == [f.name for f in files]
    for entry, image in zip(index["entries"], expected, strict=True):
        assert np.array_equal(read_image(out / entry["file"]), image)  # lossless, RGB kept in order
        assert entry["meta"]["path"] == str(video) and entry["t_capture"] > 0
    assert index["entries"][0]["t_capture"] < index["entries"][-1]["t_capture"]
    stills = [read_image(p) for p in sorted((CATEGORY / "test" / "good").glob("*.png"))[:6]]
    assert not np.array_equal(stills[0], expected[0])  # the camera's frames are not the stills: that is the point


def test_fewer_frames_than_asked_say_so_and_keep_what_came(video: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "short"
    assert main(["record", str(_pipeline(tmp_path, kind="video", path=str(video), fps=100)), "--frames", "50",
                 "--out", str(out)]) == 1
    assert "recorded only 8 of 50 frames" in capsys.readouterr().err
    assert json.loads((out / "index.json").read_text())["frames"] == 8 and len(list(out.glob("*.png"))) == 8


def test_the_timeout_bounds_a_camera_that_delivers_too_slowly(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _pipeline(tmp_path, kind="folder", path=str(CATEGORY / "test" / "good"), fps=5, loop=True)
    assert main(["record", str(cfg), "--frames", "100", "--out", str(tmp_path / "slow"), "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "no more within --timeout 1 s" in err
    assert 3 <= json.loads((tmp_path / "slow" / "index.json").read_text())["frames"] <= 7


def test_an_existing_recording_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "frame_000000.png").write_bytes(b"an earlier recording")
    cfg = _pipeline(tmp_path, kind="folder", path=str(CATEGORY / "test" / "good"), fps=None)
    assert main(["record", str(cfg), "--frames", "2", "--out", str(out)]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert (out / "frame_000000.png").read_bytes() == b"an earlier recording"
