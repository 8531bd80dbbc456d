"""One stage process: `python -m stream_ad.pipeline.worker PLAN.json STAGE [--first-id N]`.

The supervisor writes the run plan (the full settings and each stage's endpoints, queue and extras) and starts one
worker per stage. A worker that fails to start (a missing model, a camera URL that does not parse) sends a "fatal"
notice with the reason and exits 2; the supervisor stops the run with that message instead of restarting it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import sys
from pathlib import Path

from stream_ad.pipeline.stage import StageShell, StageSpec

log = logging.getLogger("stream_ad.pipeline.worker")


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the supervisor dies, so no stage outlives it (then it drains and exits)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stream_ad.pipeline.worker")
    parser.add_argument("plan", type=Path)
    parser.add_argument("stage")
    parser.add_argument("--first-id", type=int, default=None)
    args = parser.parse_args(argv)
    _die_with_parent()
    plan = json.loads(args.plan.read_text())
    spec = StageSpec(**plan["stages"][args.stage])
    if args.first_id is not None:
        spec.first_id = args.first_id
    logging.basicConfig(
        level=logging.DEBUG if plan.get("verbose") else logging.INFO,
        format=f"%(asctime)s %(levelname)s [{spec.label} %(process)d] %(name)s: %(message)s",
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    # The metrics storage is chosen when prometheus_client is first imported: the supervisor set the folder.
    from stream_ad.pipeline.metrics import StageMetrics
    from stream_ad.pipeline.registry import stage_factory
    from stream_ad.pipeline.stages import StageContext

    metrics = StageMetrics(spec.label)
    shell = StageShell(spec, metrics)
    shell.install_signals()
    try:
        ctx = StageContext(plan["settings"], spec, metrics, shell.stopping)
        fn = stage_factory(args.stage)(ctx)
    except Exception as exc:  # noqa: BLE001 - reported to the supervisor, which stops the run with this message
        log.error("%s failed to start: %s", spec.label, exc, exc_info=plan.get("verbose", False))
        shell.notifier.send("fatal", error=f"{exc.__class__.__name__}: {exc}")
        shell.close()
        return 2
    try:
        if args.stage == "source":
            src = ctx.pipeline.source
            code = shell.run_source(fn, src.stale_after_s, src.max_frames)
        else:
            # The supervisor drained the pipeline before this SIGTERM; what is left gets half the stop time.
            code = shell.run(fn, drain_s=ctx.pipeline.supervisor.stop_timeout_s / 2)
    finally:
        close = getattr(fn, "close", None)
        if callable(close):
            close()
        shell.close()
    log.debug("%s exits", spec.label)
    return code


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown (seconds with torch and faiss loaded): the sockets have delivered
    (context terminated after their linger), files are closed, logs and stdout flushed."""
    import zmq

    zmq.Context.instance().term()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
