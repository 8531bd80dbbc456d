"""`python -m benchmarks pipeline`: the transport figures (a real ZeroMQ hop between two processes); the full latency
benchmark takes minutes and is run by hand (see docs/pipeline.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_transport_overhead_is_measured_per_frame_size(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "pipeline", "--transport-only", "--json", str(tmp_path / "bench.json")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads((tmp_path / "bench.json").read_text())["transport"]
    assert set(figures) == {"224px", "1024px"}
    for side, f in ((224, figures["224px"]), (1024, figures["1024px"])):
        assert f["bytes"] == side * side * 3
        assert 0 < f["serialise_parse_us_p50"] < f["hop_us_p50"] < 1e6
    assert figures["1024px"]["hop_us_p50"] > figures["224px"]["hop_us_p50"]
    assert "ZeroMQ ipc hop" in out.stdout
