"""The infer stage's teaching channel over a real ZeroMQ socket, while a batch worker scores side by side: the frame is
taught, and the worker is held back only to swap the banks, not while the grown bank's index and graph are built; a
grown bank ready after the asker's deadline is dropped, so a teaching the console called refused never lands."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from stream_ad.artefact import load_model, read_manifest
from stream_ad.data.folders import read_image
from stream_ad.frames import Frame
from stream_ad.pipeline.model_lock import ModelLock
from stream_ad.pipeline.teaching import TeachingChannel, request_teaching
from stream_ad.settings import load_settings
from tests.teaching import DEFECT


def test_teaching_holds_the_line_back_only_for_the_swap(artefact_copy: Path, tmp_path: Path) -> None:
    model = load_model(artefact_copy, load_settings(runtime={"accelerate": "openvino"}))
    image = read_image(DEFECT)
    prepared = model.preprocessor([image])
    before = float(model.score_frames(prepared)[0])
    lock, stop, scored = ModelLock(), threading.Event(), []

    def batch_worker() -> None:  # the infer stage's: every batch under the shared lock
        while not stop.is_set():
            with lock.shared():
                model.score_frames(prepared)
            scored.append(time.monotonic())

    endpoint = f"ipc://{tmp_path}/teach"
    channel = TeachingChannel(endpoint, model, artefact_copy, threshold=before, max_patches=1000, lock=lock)
    worker = threading.Thread(target=batch_worker, daemon=True)
    worker.start()
    try:
        while not scored:
            time.sleep(0.01)
        asked = time.monotonic()
        frame = Frame(frame_id=7, camera="cam0", t_capture=time.time(), image=image)
        reply = request_teaching(endpoint, frame, "anna", timeout_s=120)
        answered = time.monotonic()
    finally:
        stop.set()
        worker.join(timeout=30)
        channel.close()
    assert reply.outcome == "taught" and reply.version == 1, reply
    assert reply.score_after is not None and reply.score_after <= before / 2
    assert read_manifest(artefact_copy).teaching[0]["patches"] == reply.patches > 0
    # The longest the worker waited between two batches while the teaching ran: a teaching that held the model alone
    # throughout (the graph's compile within it) makes this nearly the whole teaching.
    times = [asked, *(t for t in scored if asked < t < answered), answered]
    longest = max(b - a for a, b in zip(times, times[1:]))
    assert longest < 0.6 * (answered - asked), (longest, answered - asked, len(times) - 2)


def test_a_bank_grown_past_the_deadline_is_not_swapped_in(artefact_copy: Path, tmp_path: Path) -> None:
    model = load_model(artefact_copy, load_settings(runtime={"accelerate": "openvino"}))
    image = read_image(DEFECT)
    before = float(model.predict([image]).scores[0])
    endpoint = f"ipc://{tmp_path}/teach"
    channel = TeachingChannel(endpoint, model, artefact_copy, threshold=before, max_patches=1000, lock=ModelLock())
    try:
        # A deadline 1 ms away: the bank's compile alone takes longer.
        frame = Frame(frame_id=7, camera="cam0", t_capture=time.time(), image=image)
        reply = request_teaching(endpoint, frame, "anna", timeout_s=0.001)
    finally:
        channel.close()
    assert reply.outcome == "refused" and "nothing taught" in reply.detail and "teach_timeout_s" in reply.detail, reply
    assert read_manifest(artefact_copy).teaching == []
    assert float(model.predict([image]).scores[0]) == before
