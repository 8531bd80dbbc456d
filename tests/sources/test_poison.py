"""Poison input at the sources, in-process: a file or packet that cannot be decoded, whatever the decoder raises, is
one decode error and the camera moves on; a decompression bomb is refused from its header without its pixels being
allocated; a video that ends before its header's frame count says so and counts the missing frames."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import av
import pytest

from stream_ad.settings import SourceSettings
from stream_ad.sources.folder import FolderSource
from stream_ad.sources.rtsp import RtspSource
from stream_ad.sources.video import VideoSource
from tests.conftest import PIPED
from tests.sources.test_files import _images, make_video

CATEGORY = PIPED / "PA_BDP01_TL"
BOMB_SIDE = 20_000


def png(width: int, height: int, idat: bytes, colour: int = 2, depth: int = 8) -> bytes:
    """A PNG with the given header and pixel stream, checksums right (a well-formed lie, not a damaged file)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit grey PNG of side x side black pixels: ~50 KB on disk, side * side * 3 bytes once decoded."""
    squeeze = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    return png(side, side, idat, colour=0, depth=1)


def poison_folder(folder: Path) -> dict[str, str]:
    """Real images and, between them, files that must each become one decode error: name -> what the error says."""
    folder.mkdir()
    for p in sorted((CATEGORY / "test" / "good").glob("*.png"))[:2]:
        (folder / f"a_{p.name}").symlink_to(p)
        (folder / f"z_{p.name}").symlink_to(p)
    real = min((CATEGORY / "test" / "good").glob("*.png")).read_bytes()
    poison = {
        "b_huge_header.png": (png(65535, 65535, zlib.compress(b"\x00" * 10)), "65535 x 65535"),
        "c_bomb.png": (bomb(), f"{BOMB_SIDE} x {BOMB_SIDE}"),
        "d_empty.png": (b"", "unreadable header"),
        "e_truncated.png": (real[: len(real) // 2], "cannot decode image"),
        "f_not_an_image.jpg": (b"GIF89a but not really" * 10, "unreadable header"),
    }
    for name, (data, _) in poison.items():
        (folder / name).write_bytes(data)
    return {name: said for name, (_, said) in poison.items()}


@pytest.mark.parametrize("preload", [False, True])
def test_folder_source_counts_each_poison_file_and_reads_on(tmp_path: Path, preload: bool) -> None:
    said = poison_folder(tmp_path / "cam")
    items = list(FolderSource(tmp_path / "cam", fps=None, loop=False, preload=preload))
    assert len(items) == 4 + len(said)  # one capture per file, in order: nothing stopped the camera
    by_name = {Path(c.meta["path"]).name: c for c in items}
    for name, what in said.items():
        capture = by_name[name]
        assert capture.image is None and capture.drop_reason == "decode_error"
        assert name in capture.error and what in capture.error, capture.error
    assert all("max_image_pixels" in by_name[name].error for name in ("b_huge_header.png", "c_bomb.png"))
    good = [c for c in items if c.error is None]
    assert len(good) == 4 and all(c.image.shape == (128, 128, 3) for c in good)
    assert Path(items[-1].meta["path"]).name.startswith("z_")  # the files after the poison were read


def test_a_bomb_is_refused_without_allocating_its_pixels(tmp_path: Path) -> None:
    """In a fresh process (a clean peak RSS): reading the 20000 x 20000 bomb (1.2 GB decoded) stays far below it;
    with the limit raised above it, the same read does decode it, so the bound measures the refusal."""
    (tmp_path / "bomb.png").write_bytes(bomb())
    # VmHWM, not ru_maxrss: Linux carries the parent's peak RSS into ru_maxrss across fork and exec, so a child of a
    # large pytest process would show no growth at all.
    script = (
        "import re, sys; from pathlib import Path; from stream_ad.imagefile import ImageFileError, read_image_file\n"
        "def hwm(): return int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1))\n"
        "base = hwm()\n"
        "try: read_image_file(sys.argv[1], int(sys.argv[2])); print('decoded', end=' ')\n"
        "except ImageFileError as exc: print('refused', end=' ')\n"
        "print((hwm() - base) // 1024)\n"
    )

    def peak_mb(limit: int) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "bomb.png"), str(limit)],
                             capture_output=True, text=True, timeout=120, check=True).stdout.split()
        return out[0], int(out[1])

    refused, grew = peak_mb(64_000_000)
    assert refused == "refused" and grew < 50, f"refusing the bomb grew the peak RSS by {grew} MB"
    decoded, grew_decoding = peak_mb(BOMB_SIDE * BOMB_SIDE)
    assert decoded == "decoded" and grew_decoding > 1000, grew_decoding


def cut_video(tmp_path: Path, frames: int = 40) -> tuple[Path, Path]:
    """An mp4 with its index first (faststart), and the same file cut at 60 %: the header still says `frames`."""
    whole = tmp_path / "whole.mp4"
    make_video(whole, [_images(12)[i % 12] for i in range(frames)], options={"movflags": "faststart"})
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    return whole, cut


def test_a_video_that_ends_early_says_so_and_counts_the_missing_frames(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    whole, cut = cut_video(tmp_path)
    assert [c.error for c in VideoSource(whole, fps=None, loop=False)] == [None] * 40
    with caplog.at_level(logging.WARNING, "stream_ad.sources.video"):
        items = list(VideoSource(cut, fps=None, loop=False))
    assert len(items) == 40  # every frame the header announces is accounted for: read or counted missing
    read = [c for c in items if c.error is None]
    missing = [c for c in items if c.error is not None]
    assert 0 < len(read) < 40 and all(c.drop_reason == "decode_error" for c in missing)
    assert all("missing (the video ended early)" in c.error for c in missing[-5:])
    lines = [r.getMessage() for r in caplog.records if "ended early" in r.getMessage()]
    assert len(lines) == 1 and f"{40 - len(missing)} of the 40 frames" in lines[0], lines
    # A restarted source resumes after what it already delivered, missing frames included.
    assert len(list(VideoSource(cut, fps=None, loop=False, skip=35))) == 5


def test_video_and_rtsp_frames_over_the_pixel_limit_are_decode_errors(tmp_path: Path) -> None:
    video = make_video(tmp_path / "cam.mp4", _images(6))
    over = list(VideoSource(video, fps=None, loop=False, max_pixels=128 * 128 - 1))
    assert len(over) == 6 and all(c.image is None and "128 x 128" in c.error for c in over)
    # The RTSP source decodes through the same path (PyAV opens the file as it would the camera's URL): each frame
    # is a decode error, and the camera stays up (one "up" event, no reconnect).
    cfg = SourceSettings(kind="rtsp", url=str(video), max_image_pixels=128 * 128 - 1, reconnect_initial_s=0.05)
    source = RtspSource(cfg)
    items = []
    for item in source:
        items.append(item)
        if len(items) == 7:
            source.stop.set()
    assert [getattr(i, "state", None) for i in items[:1]] == ["up"]
    assert all(c.image is None and "max_image_pixels" in c.error for c in items[1:7])
    assert source.connects == 1


def test_a_damaged_packet_is_a_decode_error_and_the_video_plays_on(tmp_path: Path) -> None:
    video = make_video(tmp_path / "cam.mp4", _images(12))
    with av.open(str(video)) as container:
        sizes = [p.size for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(video.read_bytes())
    # Zero the middle of the stream's payload (the mdat box): the decoder gets packets it cannot parse.
    start = data.index(b"mdat") + 4 + sizes[0] + sizes[1]
    data[start : start + sizes[2] + sizes[3]] = bytes(sizes[2] + sizes[3])
    video.write_bytes(bytes(data))
    items = list(VideoSource(video, fps=None, loop=False))
    assert len(items) == 12  # no frame is missing: each damaged packet is one decode error, the others decode
    errors = [c.error for c in items if c.error is not None]
    assert errors and all("does not decode" in e for e in errors)
    assert items[-1].error is None and len(errors) < 12
