"""Fuzzing a running pipeline: malformed image files (truncated, bit-flipped, wrong headers, huge dimensions, real
decompression bombs) read by a folder source, and malformed messages pushed into the preprocess stage's input
socket, through real `stream-ad run` processes. Nothing restarts a stage, every input is counted with its reason
(in = scored + dropped; unaccounted 0; every message rejected), and each stage's peak memory stays bounded.

10,000 inputs (9,000 files, 1,000 messages) run in about 12 s on a 2-core machine (the model's start included), so
the default suite runs them all."""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

from tests.conftest import FaultFigures
from tests.integration.conftest import (
    CATEGORY,
    DemoRun,
    free_port_range,
    stage_pids,
    start_cli,
    wait_for,
    write_pipeline,
)
from tests.sources.test_poison import bomb

SEED = 17
SIDE = 32  # tiny images, so 10,000 fit the suite's time budget
TOTAL = 10_000
MESSAGE_SHARE = 0.1  # of the inputs, messages into a stage's socket; the rest are files
# Peak RSS (VmHWM) each stage may reach, MB (measured: source 95, preprocess 740, infer 1060, decide and sink 89):
# below what any stage would reach with one bomb decoded, 1,200 MB more (20000 x 20000 x 3).
RSS_BOUND_MB = {"source": 400, "preprocess": 1200, "infer": 2000, "decide": 400, "sink": 400}


def _encoded(rng: np.random.Generator, images: list[np.ndarray]) -> tuple[str, bytes]:
    img = images[rng.integers(len(images))]
    ext = str(rng.choice([".png", ".jpg", ".bmp"]))
    ok, data = cv2.imencode(ext, img)
    assert ok
    return ext, data.tobytes()


def _huge_png(rng: np.random.Generator, data: bytes) -> bytes:
    """The PNG's header rewritten to say a huge size, checksum right: a well-formed lie."""
    width, height = (int(v) for v in rng.integers(9_000, 65_536, size=2))
    body = data[12:16] + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + data[8:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


def fuzz_files(folder: Path, n: int, seed: int = SEED) -> None:
    """n malformed files made from real images of the small data set, with a fixed seed."""
    rng = np.random.default_rng(seed)
    sources = sorted((CATEGORY / "test").rglob("*.png"))[:20]
    images = [cv2.resize(cv2.imread(str(p)), (SIDE, SIDE), interpolation=cv2.INTER_AREA) for p in sources]
    real_bomb = bomb()
    folder.mkdir()
    for i in range(n):
        kind = ("truncated", "bitflip", "header", "huge", "bomb")[i % 5]
        ext, data = _encoded(rng, images)
        if kind == "truncated":
            data = data[: rng.integers(0, len(data))]
        elif kind == "bitflip":
            raw = bytearray(data)
            for pos in rng.integers(0, len(raw), size=rng.integers(1, 9)):
                raw[pos] ^= 1 << int(rng.integers(8))
            data = bytes(raw)
        elif kind == "header":
            data = rng.bytes(int(rng.integers(4, 17))) + data[16:]
        elif kind == "huge":
            ext, data = ".png", _huge_png(rng, cv2.imencode(".png", images[i % len(images)])[1].tobytes())
        elif i % 50 == 4:  # a real decompression bomb now and then (50 KB each on disk, 1.2 GB decoded)
            ext, data = ".png", real_bomb
        else:  # a huge-dimension header on a JPEG or BMP instead
            data = data[:16] + rng.bytes(8) + data[24:]
        (folder / f"{i:05d}_{kind}{ext}").write_bytes(data)


def fuzz_messages(n: int, seed: int = SEED) -> list[list[bytes]]:
    """n multipart messages no stage may take for a camera frame: truncated, bit-flipped headers, wrong shapes and
    dtypes, missing or short buffers."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(1, 64, size=2))
        header = {"v": 1, "id": 10_000_000 + i, "cam": "fuzz", "ts": time.time(), "sent": time.time(),
                  "arrays": [["image", "uint8", [h, w, 3]]]}
        pixels = rng.bytes(h * w * 3)
        kind = i % 5
        if kind == 0:  # the pixel buffer is missing
            parts = [json.dumps(header).encode()]
        elif kind == 1:  # short by 1..all bytes
            parts = [json.dumps(header).encode(), pixels[: rng.integers(0, len(pixels))]]
        elif kind == 2:  # a header that is not JSON (0xff never starts UTF-8)
            parts = [b"\xff" + rng.bytes(int(rng.integers(0, 200))), pixels]
        elif kind == 3:  # a shape the stage does not take (2 channels), bytes to match
            header["arrays"] = [["image", "uint8", [h, w, 2]]]
            parts = [json.dumps(header).encode(), pixels[: h * w * 2]]
        else:  # a dtype the wire does not carry
            header["arrays"] = [["image", "complex64", [h, w, 3]]]
            parts = [json.dumps(header).encode(), rng.bytes(h * w * 3 * 8)]
        out.append(parts)
    return out


class PeakMemory:
    """Each stage process's VmHWM (peak RSS) while the run lasts, read from /proc, and every pid a stage had."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.peak_mb: dict[str, float] = {}
        self.pids: dict[str, set[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            for stage, pid in stage_pids(self.parent).items():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
                self.peak_mb[stage] = max(self.peak_mb.get(stage, 0.0), kb / 1024)
                self.pids.setdefault(stage, set()).add(pid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_fuzz(demo_run: DemoRun, tmp_path: Path, total: int) -> dict[str, Any]:
    n_messages = int(total * MESSAGE_SHARE)
    folder = tmp_path / "fuzz"
    start = time.monotonic()
    fuzz_files(folder, total - n_messages)
    messages = fuzz_messages(n_messages)
    made_s = time.monotonic() - start
    base = free_port_range(6)
    cfg = write_pipeline(
        tmp_path / "fuzz.yaml", demo_run.model, tmp_path, transport="tcp", tcp_base_port=base,
        insecure_tcp=True,  # the fuzzing peer reaches the stage without keys: what a stage itself checks is tested
        metrics={"enabled": False},
        source={"path": str(folder), "fps": None, "loop": False, "preload": False},
        calibration_check={"enabled": False},
    )
    summary_file = tmp_path / "summary.json"
    log = tmp_path / "run.log"
    start = time.monotonic()
    proc = start_cli("run", str(cfg), "--summary", str(summary_file), log=log)
    memory = PeakMemory(proc.pid)
    try:
        wait_for(lambda: len(stage_pids(proc.pid)) == 5 or proc.poll() is not None, 240, "the stages")
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 5000)
        push.connect(f"tcp://127.0.0.1:{base + 1}")  # the preprocess stage's input
        for parts in messages:
            push.send_multipart(parts)
        push.close()
        rc = proc.wait(timeout=600)
    finally:
        memory.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    took = time.monotonic() - start
    text = log.read_text()
    assert rc == 0, text[-4000:]
    summary = json.loads(summary_file.read_text())
    print(f"fuzz {total}: made in {made_s:.1f} s, ran in {took:.1f} s; peak RSS MB {memory.peak_mb}; "
          f"scored {summary['scored']}, dropped {summary['dropped']}, rejected {summary['rejected_messages']}")

    # No stage restarted: the summary's restarts row, and one pid per stage all along.
    assert not any(summary["restarts"].values()), summary["restarts"]
    assert all(len(pids) == 1 for pids in memory.pids.values()), memory.pids
    assert "died" not in text and "restarting" not in text
    # Every file came in and was scored or dropped with its reason; every message was rejected and counted.
    assert summary["frames_in"] == total - n_messages
    assert summary["frames_in"] == summary["scored"] + summary["dropped_total"]
    assert summary["unaccounted"] == 0 and summary["in_flight_at_end"] == 0
    assert summary["dropped"]["decode_error"] >= (total - n_messages) * 3 // 5  # truncated, header, huge, bomb
    assert set(summary["dropped"]) <= {"decode_error", "queue_full"}, summary["dropped"]
    # Every message counted: most rejected as bad frames, a few that parsed may meet a full queue first.
    rejected = summary["rejected_messages"]
    assert sum(rejected.values()) == n_messages and set(rejected) <= {"bad_frame", "queue_full"}, rejected
    assert rejected["bad_frame"] >= n_messages * 9 // 10, rejected
    # Memory bounded: no bomb was decoded anywhere.
    assert set(memory.peak_mb) == set(RSS_BOUND_MB)
    for stage, bound in RSS_BOUND_MB.items():
        assert memory.peak_mb[stage] < bound, f"{stage} peaked at {memory.peak_mb[stage]:.0f} MB (bound {bound})"
    return summary


def test_fuzz_10000_inputs_through_a_running_pipeline(demo_run: DemoRun, tmp_path: Path,
                                                    fault_figures: Callable[[FaultFigures], None]) -> None:
    summary = run_fuzz(demo_run, tmp_path, TOTAL)
    n_messages = int(TOTAL * MESSAGE_SHARE)
    fault_figures(FaultFigures(
        "poison input (fuzz)", f"{TOTAL - n_messages} malformed image files, {n_messages} malformed messages",
        f"files: {summary['scored']} scored, dropped {summary['dropped']}; messages rejected "
        f"{summary['rejected_messages']}; no stage restarted", summary["unaccounted"]))
