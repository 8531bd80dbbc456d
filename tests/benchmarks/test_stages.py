"""`python -m benchmarks stages`: its options, the H.264 camera it makes, and the per-stage CPU sampling it reads
(the benchmark itself runs by hand: see docs/pipeline.md)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.__main__ import build_parser, options_of
from benchmarks.cameras import ServiceSampler
from benchmarks.stages import StagesBenchOptions, camera_of, h264_video, video_frames
from stream_ad.settings import Settings, load_settings


def test_parser_takes_kinds_and_an_even_video_size() -> None:
    options = options_of(build_parser().parse_args(["stages", "--kinds", "h264", "--video-size", "320x240"]),
                         StagesBenchOptions)
    assert (options.kinds, options.video_size, options.fps) == (("h264",), (320, 240), 20.0)
    for flag, bad in (("--kinds", "mjpeg"), ("--video-size", "321x240"), ("--video-size", "320"),
                      ("--video-size", "0x240")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["stages", flag, bad])


def test_the_h264_camera_plays_every_frame_at_the_size_asked(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (90, 130), dtype=np.uint8) for _ in range(3)]  # grey, another size
    frames += [rng.integers(0, 255, (200, 150, 3), dtype=np.uint8) for _ in range(4)]
    video = h264_video(frames, (160, 120), 10.0, tmp_path / "v.mp4")
    decoded = list(video_frames(video))
    assert len(decoded) == len(frames)
    assert all(frame.shape == (120, 160, 3) and frame.dtype == np.uint8 for frame in decoded)
    camera = camera_of("h264", video)(load_settings(), 12.5, "cam3")
    child = Settings.model_validate_json(load_settings().model_copy(
        update={"pipeline": load_settings().pipeline.model_copy(update={"source": camera})}).model_dump_json())
    source = child.pipeline.source
    assert (source.kind, source.path, source.fps, source.camera, source.loop) == ("video", video, 12.5, "cam3", True)
    images = camera_of("images", None)(load_settings(), 5.0, "cam0")
    assert images.kind == "folder" and not images.preload  # decoded as read: the decoding is measured


def test_the_sampler_counts_a_busy_process_s_cpu_and_not_an_idle_one_s() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    try:
        sampler = ServiceSampler([busy.pid], time.monotonic() + 0.2, None)
        idle_sampler = ServiceSampler([idle.pid], time.monotonic() + 0.2, None)
        time.sleep(2.5)
        memory, cores = sampler.stop()
        _, idle_cores = idle_sampler.stop()
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()
    assert memory.rss_mb > 1 and memory.processes == 1
    # One process spinning: about one core, less where others share the 2 cores (0.48 under two pytest workers and a
    # benchmark); a sampler that missed its CPU would show about 0.
    assert 0.25 < cores["other"] <= 1.1, cores
    assert idle_cores["other"] < 0.1, idle_cores


def test_the_sampler_counts_no_cpu_spent_before_its_window_opens() -> None:
    """A camera's start-up (its frames preloaded) comes before the window measure_from opens."""
    proc = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.0\nwhile time.time() < end: "
                             "pass\nprint('spun', flush=True)\ntime.sleep(3)"], stdout=subprocess.PIPE, text=True)
    try:
        sampler = ServiceSampler([proc.pid], float("inf"), None)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "spun"
        sampler.measure_from(time.monotonic(), None)
        time.sleep(1.5)
        _, cores = sampler.stop()
    finally:
        proc.kill()
        proc.wait()
    assert cores["other"] < 0.1, cores  # the spinning second is left out
