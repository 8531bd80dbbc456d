"""Start-up time on a line PC: each stage process imports only what it runs. Every stage process imports the worker
module, so a camera or sink library loaded there is paid by each of them; scipy is not in the line install at all."""

from __future__ import annotations

from pathlib import Path

from tests.imports import imported_packages

# Camera libraries (PyAV, Pillow, OpenCV), the PLC sinks' protocols, and what the line install does not have.
UNUSED_AT_START = {"av", "PIL", "cv2", "asyncua", "pymodbus", "paho", "scipy", "torch"}


def test_a_stage_process_starts_without_camera_sink_or_scipy_libraries() -> None:
    assert imported_packages("import stream_ad.pipeline.worker") & UNUSED_AT_START == set()


def test_the_run_command_imports_no_scipy_nor_a_camera_or_plc_library() -> None:
    assert imported_packages("import stream_ad.commands.run") & (UNUSED_AT_START - {"PIL", "cv2"}) == set()


def test_a_sink_kind_loads_its_library_when_made(tmp_path: Path) -> None:
    make = ("from pathlib import Path\nfrom stream_ad.sinks import make_sink\n"
            "from stream_ad.settings import ImagesSinkSettings, JsonlSinkSettings\n"
            f"make_sink({{kind}}SinkSettings(), Path({str(tmp_path)!r}))")
    assert "cv2" not in imported_packages(make.format(kind="Jsonl"))
    assert "cv2" in imported_packages(make.format(kind="Images"))
