"""A GigE Vision camera: aravis' fake GigE Vision camera on 127.0.0.1, read by the gige source. Frames arrive as
RGB, a lagging consumer gets the newest frame with every skipped one reported as a drop with its reason, settings
the camera lacks are errors naming them, and a camera that dies is reported down and reconnected."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_ad.frames import CameraEvent, Capture
from stream_ad.settings import SourceSettings

FAKE = "arv-fake-gv-camera-0.8"


class FakeCamera:
    def __init__(self, log: Path) -> None:
        self.log, self.proc = log, None

    def start(self) -> None:
        self.proc = subprocess.Popen([FAKE, "-i", "127.0.0.1"], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))  # noqa: SIM115 - the child holds it
        time.sleep(0.5)
        if self.proc.poll() is not None:
            pytest.fail(f"{FAKE} did not start: {self.log.read_text()[-1000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def fake_camera(tmp_path: Path) -> Iterator[FakeCamera]:
    if shutil.which(FAKE) is None:
        pytest.skip(f"{FAKE} missing: Debian package aravis-tools (scripts/setup.sh installs it)")
    try:
        from stream_ad.sources.gige import _aravis

        _aravis()
    except RuntimeError as exc:
        pytest.skip(f"Debian package gir1.2-aravis-0.8 or PyGObject missing: {exc}")
    cam = FakeCamera(tmp_path / "fake_camera.log")
    cam.start()
    yield cam
    cam.stop()


def gige(**kw: object) -> SourceSettings:
    gige_kw = {"camera": "127.0.0.1", "frame_rate": 30.0, "exposure_us": 1000.0, "pixel_format": "Mono8",
               **kw.pop("gige", {})}  # type: ignore[dict-item]
    return SourceSettings(**{"kind": "gige", "read_timeout_s": 1.0, "reconnect_initial_s": 0.2,
                             "reconnect_max_s": 0.5, "gige": gige_kw, **kw})


def _iterate(cfg: SourceSettings, per_item_s: float, until: object) -> list[Capture | CameraEvent]:
    from stream_ad.sources import open_source

    stop = threading.Event()
    items: list[Capture | CameraEvent] = []
    deadline = time.monotonic() + 30
    for item in open_source(cfg, Path("."), stop=stop):
        items.append(item)
        if until(items) or time.monotonic() > deadline:  # type: ignore[operator]
            stop.set()
            break
        if isinstance(item, Capture) and item.error is None:
            time.sleep(per_item_s)
    return items


def frames(items: list[Capture | CameraEvent]) -> list[Capture]:
    return [i for i in items if isinstance(i, Capture) and i.error is None]


def test_gige_frames_are_rgb_at_the_set_rate(fake_camera: FakeCamera) -> None:
    items = _iterate(gige(), 0.0, lambda it: len(frames(it)) >= 15)
    assert isinstance(items[0], CameraEvent) and items[0].state == "up"
    got = frames(items)
    assert len(got) == 15 and got[0].image.shape == (512, 512, 3) and got[0].image.dtype.name == "uint8"
    rate = (len(got) - 1) / (got[-1].t_capture - got[0].t_capture)
    assert 20 < rate < 40, f"{rate:.1f} fps from a camera set to 30"


def test_lagging_consumer_gets_newest_frames_and_every_skip_is_counted(fake_camera: FakeCamera) -> None:
    items = _iterate(gige(), 0.2, lambda it: len(frames(it)) >= 8)  # 5 fps of a 30 fps camera
    captures = [i for i in items if isinstance(i, Capture)]
    drops = [c for c in captures if c.error is not None]
    assert drops and {c.drop_reason for c in drops} <= {"newest_only", "buffer_underrun"}
    assert any(c.drop_reason == "newest_only" for c in drops)
    # Between two delivered frames, the camera's frame ids skipped equal the drops reported: none uncounted.
    delivered = [i for i, c in enumerate(captures) if c.error is None]
    for a, b in zip(delivered, delivered[1:], strict=False):
        gap = captures[b].meta["gige_frame_id"] - captures[a].meta["gige_frame_id"] - 1
        assert gap == b - a - 1, f"frame ids skip {gap}, {b - a - 1} drops reported"


def test_a_setting_the_camera_lacks_names_it(fake_camera: FakeCamera) -> None:
    with pytest.raises(ValueError, match=r"pipeline\.source\.gige\.pixel_format: .*does not offer 'Mono12'"):
        _iterate(gige(gige={"pixel_format": "Mono12"}), 0.0, lambda it: True if frames(it) else False)


def test_a_camera_that_is_not_there_is_reported_down_naming_the_setting(fake_camera: FakeCamera) -> None:
    items = _iterate(gige(gige={"camera": "Nobody-Cam-0"}), 0.0, lambda it: len(it) >= 2)
    assert all(isinstance(i, CameraEvent) and i.state == "down" for i in items)
    assert "pipeline.source.gige.camera: cannot open Nobody-Cam-0" in items[0].detail


def test_a_dead_camera_is_reported_down_and_reconnected(fake_camera: FakeCamera) -> None:
    def script(items: list[Capture | CameraEvent]) -> bool:
        events = [i.state for i in items if isinstance(i, CameraEvent)]
        if len(frames(items)) == 5 and events == ["up"]:
            fake_camera.stop()
        if events == ["up", "down"] and (fake_camera.proc is None or fake_camera.proc.poll() is not None):
            fake_camera.start()
        # A frame dropped as newest_only may come first after the reconnect: wait for a delivered one.
        last = items[-1]
        return events[:2] == ["up", "down"] and "up" in events[2:] and isinstance(last, Capture) and last.error is None

    items = _iterate(gige(), 0.0, script)
    events = [i.state for i in items if isinstance(i, CameraEvent)]
    assert events[0] == "up" and "down" in events and events[-1] == "up"
    assert isinstance(items[-1], Capture) and items[-1].image is not None


def test_frames_over_the_pixel_limit_are_decode_errors_and_the_camera_stays_up(fake_camera: FakeCamera) -> None:
    items = _iterate(gige(max_image_pixels=512 * 512 - 1), 0.0,
                     lambda it: sum(isinstance(i, Capture) and i.drop_reason == "decode_error" for i in it) >= 10)
    events = [i.state for i in items if isinstance(i, CameraEvent)]
    assert events == ["up"]  # no reconnect: a bad frame costs the frame, not the camera
    errors = [i.error for i in items if isinstance(i, Capture) and i.drop_reason == "decode_error"]
    assert len(errors) == 10 and all("512 x 512" in e and "max_image_pixels" in e for e in errors)
