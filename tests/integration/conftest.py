"""Fixtures of the pipeline tests: one demo run (which fits the small model every other test reuses), free ports on
127.0.0.1, pipeline YAML files, and real stage processes found by their command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PIPED, SHARED
from tests.workers import once_per_run

CATEGORY = PIPED / "PA_BDP01_TL"
DEMO_FPS = 20
DEMO_TARGET_FPR = 0.35


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(n: int) -> int:
    """A base port with n consecutive free ports after it (tcp transport: stage i listens on base + i)."""
    for _ in range(200):
        base = free_port()
        if base + n >= 65000:
            continue
        try:
            socks = []
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free port range")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_ad.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def start_cli(*args: str, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - closed with the process by the test
    return subprocess.Popen([sys.executable, "-m", "stream_ad.cli", *args], stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def running(cfg: Path, summary: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`stream-ad run` in the background, killed on the way out should the test fail before it stopped."""
    proc = start_cli("run", str(cfg), "--summary", str(summary), log=log)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def write_pipeline(path: Path, model: Path, output_dir: Path, **pipeline: Any) -> Path:
    settings = {
        "data": {"root": str(CATEGORY)},
        "output_dir": str(output_dir),
        "scorer": {"params": {"coreset_ratio": 0.05}},
        "pipeline": {"model": str(model), "progress": False, **pipeline},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def scrape(port: int) -> dict[str, float]:
    """A run's /metrics endpoint, parsed into {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def metric_sum(metrics: dict[str, float], name: str, *labels: str) -> float:
    return sum(v for k, v in metrics.items() if k.split("{")[0] == name and all(lab in k for lab in labels))


def pipeline_push(keys_dir: Path, endpoint: str) -> Any:
    """A PUSH socket connected to a stage or the supervisor of a tcp pipeline, holding its CURVE client keys (as a
    stage does): what it sends passes the handshake and meets the stage's own checks."""
    import zmq

    from stream_ad.pipeline.curve import load_keys, secure_client

    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    secure_client(sock, endpoint, load_keys(keys_dir))
    sock.connect(endpoint)
    return sock


def stage_pids(parent: int) -> dict[str, int]:
    """The stage processes of a `stream-ad run` (children running stream_ad.pipeline.worker), by stage name."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"stream_ad.pipeline.worker" in cmd:
            found[cmd[cmd.index(b"stream_ad.pipeline.worker") + 2].decode()] = int(entry.name)
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class DemoRun:
    proc: subprocess.CompletedProcess[str]
    output_dir: Path
    model: Path
    summary: dict[str, Any]
    verdicts: list[dict[str, Any]]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """`stream-ad demo` on a small PIPED category, with the stdout and images sinks added. Its fitted model (with the
    demo's calibrated threshold) serves the other pipeline tests. Run once for all workers: the others read its
    output folder and the process's outcome (proc.json)."""
    with once_per_run(tmp_path_factory, "demo") as (out, make):
        outcome = out / "proc.json"
        if make:
            env = {
                "STREAM_AD_SHARED_DIR": str(SHARED),
                "STREAM_AD_DATA__ROOT": str(CATEGORY),
                "STREAM_AD_OUTPUT_DIR": str(out),
                "STREAM_AD_SCORER__PARAMS__CORESET_RATIO": "0.05",
                # The demo cross-fits: the 32 good training images' out-of-fold scores bound the false-alarm rate
                # by 0.35 at 95 % with false alarms allowed (8 held out would allow none).
                "STREAM_AD_CALIBRATION__TARGET_FPR": str(DEMO_TARGET_FPR),
                "STREAM_AD_PIPELINE__SINK__OUTPUTS": '[{"kind": "stdout"}, {"kind": "images"}]',
            }
            done = cli("demo", "--fps", str(DEMO_FPS), "--metrics-port", "0", "--json", str(out / "summary.json"),
                       env=env)
            outcome.write_text(json.dumps({"args": done.args, "returncode": done.returncode, "stdout": done.stdout,
                                           "stderr": done.stderr}))
    proc = subprocess.CompletedProcess(**json.loads(outcome.read_text()))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model = out / "demo" / "PA_BDP01_TL-patchcore"
    return DemoRun(proc, out, model, json.loads((out / "summary.json").read_text()),
                   read_jsonl(out / "demo" / "verdicts.jsonl"))


@pytest.fixture(scope="session")
def model_without_threshold(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's model with its threshold taken out (as `stream-ad fit` writes it before calibration)."""
    import dataclasses
    import shutil

    from stream_ad.artefact import read_manifest, write_manifest

    target = tmp_path_factory.mktemp("uncalibrated") / "model"
    shutil.copytree(demo_run.model, target)
    write_manifest(target, dataclasses.replace(read_manifest(target), threshold=None))  # re-summed
    return target
