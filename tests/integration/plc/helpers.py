"""Verdicts, metric readings and an MQTT subscriber for the PLC sink tests."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from prometheus_client import REGISTRY

from stream_ad.frames import Verdict
from stream_ad.settings import JsonlSinkSettings
from stream_ad.sinks.base import Sink, make_sink


class Subscriber:
    """A plain paho client on the broker, collecting (topic, payload, retain) of what it receives."""

    def __init__(self, port: int, topic: str, tls: dict[str, Path] | None = None,
                 user: tuple[str, str] | None = None) -> None:
        self.messages: queue.Queue[tuple[str, Any, bool]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}")
        if tls is not None:  # ca_certs, certfile, keyfile
            self.client.tls_set(**{k: str(v) for k, v in tls.items()})
        if user is not None:
            self.client.username_pw_set(*user)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, json.loads(m.payload), m.retain))
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def take(self, n: int, timeout: float = 15.0) -> list[tuple[str, Any, bool]]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            try:
                out.append(self.messages.get(timeout=0.2))
            except queue.Empty:
                pass
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


RUN_ID = "5f0c7d1e-2b8a-4e8e-9d57-1c0b7a3e6f21"  # the run the test verdicts come from


def verdict(frame_id: int, alarm: bool, camera: str = "line1") -> Verdict:
    now = time.time()
    return Verdict(frame_id, camera, now - 0.05, now, 2.0 + frame_id / 1000 if alarm else 0.5, 1.0,
                   "anomaly" if alarm else "ok", {}, run_id=RUN_ID)


def sink(settings: Any, tmp_path: Path) -> Sink:
    return make_sink(settings, tmp_path, "pipeline.sink.outputs.0")


def metric(name: str, sink_label: str) -> float:
    return REGISTRY.get_sample_value(name, {"sink": sink_label}) or 0.0


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def dedup_consecutive(seqs: list[int]) -> tuple[list[int], int]:
    """The sequence with immediate repeats removed (an at-least-once resend), and how many there were."""
    out: list[int] = []
    for s in seqs:
        if not out or out[-1] != s:
            out.append(s)
    return out, len(seqs) - len(out)


__all__ = ["RUN_ID", "JsonlSinkSettings", "Subscriber", "dedup_consecutive", "metric", "sink", "verdict", "wait_until"]
