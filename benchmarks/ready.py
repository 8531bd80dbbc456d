"""Start-up to READY: seconds from spawning `stream-ad run PIPELINE` to its READY=1 on a notify socket, as systemd
gets it (every stage up, the model loaded and warmed up), for one or more installs, interleaved round by round so a
changing load weighs on each alike. Standard library only: it runs from a line install (no torch) too.

    python benchmarks/ready.py PIPELINE.yaml [--rounds N] STREAM_AD [STREAM_AD ...]

STREAM_AD: a `stream-ad` executable, e.g. .venv-line/bin/stream-ad. Give the pipeline a source that outlasts the
start-up (each run is stopped with SIGTERM once READY arrives).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

TIMEOUT_S = 120.0


def seconds_to_ready(stream_ad: Path, pipeline: Path) -> float:
    """One run: spawn, wait for READY=1 on our own notify socket, stop it."""
    with tempfile.TemporaryDirectory(prefix="stream-ad-ready-") as tmp:
        address = str(Path(tmp) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(address)
            sock.settimeout(0.2)  # to look at the process between datagrams
            # PYTHONPATH left out: the install's own packages only.
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"NOTIFY_SOCKET": address}
            start = time.perf_counter()
            proc = subprocess.Popen([str(stream_ad), "run", str(pipeline)], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                while True:
                    try:
                        if "READY=1" in sock.recv(4096).decode().splitlines():
                            return time.perf_counter() - start
                    except TimeoutError:
                        pass
                    if proc.poll() is not None:
                        raise RuntimeError(f"{stream_ad} run {pipeline} exited ({proc.returncode}) before READY=1")
                    if time.perf_counter() - start > TIMEOUT_S:
                        raise RuntimeError(f"{stream_ad} run {pipeline}: no READY=1 within {TIMEOUT_S:.0f} s")
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(TIMEOUT_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("stream_ad", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    seconds: dict[Path, list[float]] = {exe: [] for exe in args.stream_ad}
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for exe in args.stream_ad:
            seconds[exe].append(seconds_to_ready(exe, args.pipeline))
    for exe, runs in seconds.items():
        print(f"{exe}: median {statistics.median(runs):.2f} s, min {min(runs):.2f}, max {max(runs):.2f} "
              f"({' '.join(f'{s:.2f}' for s in runs)})")
    print(f"1-minute load average at each round: {' '.join(f'{load:.1f}' for load in loads)}")


if __name__ == "__main__":
    main()
