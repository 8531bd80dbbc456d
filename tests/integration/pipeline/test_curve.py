"""A tcp pipeline with CURVE keys, real processes on 127.0.0.1: it runs and accounts for every frame exactly while
forgers push frames and notices to the decide stage's and the supervisor's ports. A peer without keys and one with
other keys are refused at the handshake and counted; nothing they send reaches a verdict or the ledger, and their
source_done does not stop the run. A peer with the pipeline's own keys (a broken stage) gets its impossible notices
refused by the supervisor: a source_done not from the source's process, a frame id far outside the run."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import zmq

from stream_ad.frames import Frame
from stream_ad.pipeline import notices, wire
from stream_ad.pipeline.curve import load_keys
from stream_ad.pipeline.notices import FrameDone, FrameDropped, FrameIn, SourceDone
from tests.conftest import FaultFigures
from tests.integration import conftest as harness

FRAMES = 150  # 15 s at 10 fps: the forgers act while the camera still delivers
FORGED_ID = 1_000_000_000


def _forgeries(source_pid: int) -> tuple[list[list[bytes]], list[bytes]]:
    """(frames for the decide stage, notices for the supervisor) a forger would send: an alarm, and notices that
    would make real frames count as lost or stop the run as if its camera had ended."""
    frame = wire.encode(Frame(frame_id=FORGED_ID, camera="cam0", t_capture=time.time(), score=1e9))
    told = [
        notices.encode(FrameIn("cam0", FORGED_ID, time.time()), "source", source_pid),
        notices.encode(FrameDone("cam0", FORGED_ID, time.time(), time.time(), 1e9, "anomaly"), "sink", 1),
        notices.encode(FrameDropped("cam0", 0, "queue_full"), "infer", 1),
        notices.encode(SourceDone("cam0", last_id=0), "source", source_pid),
    ]
    return [frame], told


def _forge(ctx: zmq.Context, endpoint: str, messages: list[list[bytes]], keys: tuple[bytes, bytes, bytes] | None,
           ) -> zmq.Socket:
    """A PUSH socket that keeps trying to deliver `messages` (public, secret, server key: CURVE; None: none)."""
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
    sock.connect(endpoint)
    for parts in messages:
        sock.send_multipart(parts)  # queued until a handshake succeeds: never, here
    return sock


def test_a_keyed_tcp_pipeline_refuses_forgers_and_accounts_exactly(
    demo_run: harness.DemoRun, tmp_path: Path, fault_figures: Callable[[FaultFigures], None]
) -> None:
    keys_dir = tmp_path / "keys"
    made = harness.cli("keys", str(keys_dir), timeout=60)
    assert made.returncode == 0, made.stderr
    base, metrics_port = harness.free_port_range(6), harness.free_port()
    verdict_log = tmp_path / "verdicts.jsonl"
    cfg = harness.write_pipeline(
        tmp_path / "line.yaml", demo_run.model, tmp_path, transport="tcp", tcp_base_port=base,
        keys_dir=str(keys_dir), policy="block", metrics={"port": metrics_port}, calibration_check={"enabled": False},
        source={"path": str(harness.CATEGORY / "test"), "fps": 10, "loop": True, "max_frames": FRAMES},
    )
    supervisor, decide = f"tcp://127.0.0.1:{base}", f"tcp://127.0.0.1:{base + 3}"
    log = tmp_path / "run.log"
    proc = harness.start_cli("run", str(cfg), "--summary", str(tmp_path / "summary.json"), log=log)
    ctx = zmq.Context()
    forgers: list[zmq.Socket] = []
    try:
        harness.wait_for(lambda: harness.read_jsonl(verdict_log), 240, "the first verdicts")
        source_pid = harness.stage_pids(proc.pid)["source"]
        frames, told = _forgeries(source_pid)
        real = load_keys(keys_dir)
        public, secret = zmq.curve_keypair()
        for keys in (None, (public, secret, real.server_public)):  # no CURVE; a key pair the pipeline did not make
            forgers += [_forge(ctx, decide, frames, keys), _forge(ctx, supervisor, [[m] for m in told], keys)]
        # A peer with the pipeline's keys passes the handshake; the supervisor refuses what cannot be true.
        insider = harness.pipeline_push(keys_dir, supervisor)
        insider.send(notices.encode(SourceDone("cam0", last_id=0), "source", os.getpid()))  # not the source's pid
        insider.send(notices.encode(SourceDone("cam0", last_id=0), "decide", source_pid))  # not the source's label
        insider.send(notices.encode(FrameDone("cam0", FORGED_ID, 0.0, 0.1, 1e9, "anomaly"), "sink", 1))
        insider.close()

        def refusals() -> dict[str, float] | None:
            m = harness.scrape(metrics_port)
            # Each forger's handshake is refused once at least: the one without CURVE as no_curve (or, when it
            # hangs up first, handshake_error), the one with other keys as unknown_key (the ZAP handler's no).
            peers = "stream_ad_rejected_peers_total"
            counted = {f"{stage}:{reason}": harness.metric_sum(m, peers, f'stage="{stage}"', *r)
                       for stage in ("decide", "supervisor")
                       for reason, r in (("all", ()), ("unknown_key", ('reason="unknown_key"',)))}
            counted |= {reason: harness.metric_sum(m, "stream_ad_rejected_notices_total", f'reason="{reason}"')
                        for reason in ("source_done", "frame_id")}
            done = counted["decide:all"] >= 2 and counted["supervisor:all"] >= 2 and all(counted.values())
            return counted if done else None

        counted = harness.wait_for(refusals, 60, "the forgers to be refused and counted")
        assert counted["source_done"] == 2 and counted["frame_id"] == 1, counted
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()  # the stages' and the supervisor's counts in one family
        assert text.count("# TYPE stream_ad_rejected_peers_total counter") == 1
        assert proc.poll() is None  # no forged source_done stopped it
        rc = proc.wait(timeout=300)
    finally:
        for sock in forgers:
            sock.close()
        ctx.term()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert rc == 0, out[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    fault_figures(FaultFigures(
        "forged messages (tcp with keys)",
        f"{len(frames)} frames and {len(told)} notices from each of 2 clients (no CURVE; other keys), then 2 "
        "source_done and 1 verdict of a far-off frame id with the pipeline's own keys",
        f"handshakes refused {({k: v for k, v in counted.items() if ':' in k})}, notices refused "
        f"{summary['refused_notices']}; {summary['scored']} of {FRAMES} real frames scored, run not stopped",
        summary["unaccounted"]))
    # The camera ran to its end; every frame got its verdict, no more and no other.
    assert summary["frames_in"] == summary["scored"] == FRAMES, summary
    assert summary["dropped_total"] == 0 and summary["unaccounted"] == 0 and summary["in_flight_at_end"] == 0
    assert summary["rejected_messages"] == {}  # nothing forged reached the ledger
    assert summary["refused_notices"] == {"source_done": 2, "frame_id": 1}
    verdicts = harness.read_jsonl(verdict_log)
    first = summary["first_frame_id"]
    assert sorted(v["frame_id"] for v in verdicts) == list(range(first, first + FRAMES))
    assert sum(v["verdict"] == "anomaly" for v in verdicts) == summary["alarms"]
    assert f"decide: refused a peer on {decide}" in out and f"supervisor: refused a peer on {supervisor}" in out
    assert "refused a source_done notice (camera cam0) from decide" not in out  # the second one: rate-limited
    assert "refused a source_done notice (camera cam0) from source" in out
