"""One stage process: `python -m stream_ad.pipeline.worker PLAN.json STAGE [--first-id N] [--verbose]`.

The supervisor writes the run plan (stream_ad.pipeline.plan) and starts one worker per stage. The worker opens its
stage (the source: its camera), runs it in the shell and closes it. A worker that fails to open (a missing model, a
camera URL that does not parse), or whose stage raises StageFailed later, sends a StageFatal notice with the reason
and exits FATAL_EXIT (2); the supervisor stops the run with that message instead of restarting it.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

import zmq

from stream_ad.pipeline.curve import CurveGuard, pipeline_keys
from stream_ad.pipeline.errors import FATAL_EXIT
from stream_ad.pipeline.metrics import StageMetrics
from stream_ad.pipeline.notices import StageFatal
from stream_ad.pipeline.plan import RunPlan
from stream_ad.pipeline.shell import StageShell
from stream_ad.pipeline.stages.base import Stage, StageContext, StageFailed
from stream_ad.pipeline.stages.registry import stage_class
from stream_ad.pipeline.stages.source import open_camera
from stream_ad.runtime.logs import configure_logging
from stream_ad.sources import Camera

log = logging.getLogger("stream_ad.pipeline.worker")


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the supervisor dies, so no stage outlives it (then it drains and exits)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _open_stage(ctx: StageContext) -> Stage:
    stage = stage_class(ctx.spec.name)()
    stage.open(ctx)
    return stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stream_ad.pipeline.worker")
    parser.add_argument("plan", type=Path)
    parser.add_argument("stage")
    parser.add_argument("--first-id", type=int, default=None)  # default: the plan's first_frame_id
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    _die_with_parent()
    plan = RunPlan.from_json(args.plan.read_text())
    spec = plan.stage(args.stage)
    configure_logging(args.verbose, f"%(asctime)s %(levelname)s [{spec.label} %(process)d] %(name)s: %(message)s")
    metrics = StageMetrics(spec.label)
    # The supervisor checked the keys before it started any stage.
    curve = CurveGuard(pipeline_keys(plan.settings.pipeline), zmq.Context.instance(), metrics.rejected_peers)
    shell = StageShell(spec, plan.notices, metrics, curve, run_id=plan.run_id,
                       hung_after_s=plan.settings.pipeline.supervisor.hung_after_s)
    shell.install_signals()
    first_id = plan.first_frame_id if args.first_id is None else args.first_id
    ctx = StageContext(plan, spec, metrics, shell.stopping, shell.drop, first_id, shell.liveness.tick)
    pipeline = plan.settings.pipeline
    try:
        # The source is no Stage: it has no input, the shell reads its camera.
        opened = open_camera(ctx) if spec.bind is None else _open_stage(ctx)
    except Exception as exc:  # any: reported to the supervisor, which stops the run with this message
        log.error("%s failed to start: %s", spec.label, exc, exc_info=args.verbose)
        shell.notifier.send(StageFatal(f"{exc.__class__.__name__}: {exc}"))
        shell.close()
        return FATAL_EXIT
    try:
        if isinstance(opened, Camera):
            shell.drain_s = pipeline.supervisor.drain_timeout_s
            code = shell.run_source(opened, ctx.camera[1], first_id)
        else:
            # The supervisor drained the pipeline before this SIGTERM; what is left gets half the stop time.
            code = shell.run(opened, drain_s=pipeline.supervisor.stop_timeout_s / 2)
    except StageFailed as exc:  # the frames still queued here are counted as shutdown by the supervisor
        log.error("%s stops the run: %s", spec.label, exc)
        shell.notifier.send(StageFatal(str(exc)))
        code = FATAL_EXIT
    finally:
        opened.close()
        shell.close()
    log.debug("%s exits", spec.label)
    return code


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown (seconds with torch and faiss loaded): the sockets have delivered
    (context terminated after their linger), files are closed, logs and stdout flushed."""
    zmq.Context.instance().term()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())
