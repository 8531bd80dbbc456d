"""The streaming pipeline: camera -> source -> preprocess -> infer -> decide -> sinks, one process per stage.

In the stage processes:
wire.py        a frame on the wire (JSON header + raw buffers, no pickle)
notices.py     what stages tell the supervisor: typed notices, encoded and decoded in one place
plan.py        settings -> the stages and their endpoints (a pure function), written to the run folder as JSON; the
               run's identity (run id, first frame id)
curve.py       CURVE keys and sockets on tcp: only the pipeline's processes get through, refusals counted
shell.py       the shell around every stage (sockets, queue, batching, drop policy, metrics, signals), written once
liveness.py    a stage's heartbeats: proof that its worker loop moves
batching.py    the bounded queue in front of each stage, its drop policy, dynamic batching
stages/        the stages (open / process / close) and the registry of their names
worker.py      the entry point of one stage process
tap.py         the sink stage's bounded, drop-oldest tap to the operator's console
teaching.py    the infer stage's teaching channel (the console's "good" button)

In the supervising process:
run.py         one run, start to summary: run_pipeline() composes what follows
served.py      which model artefact judges which camera: threshold, serving settings, calibration, identity
reload.py      what a reload (SIGHUP) may change and what it changes: cameras and models
preflight.py   checks before any process starts: the sources, the endpoints to bind, the paths to write
supervisor.py  the stage processes' lifecycle: spawn, readiness, hung stages, restart with backoff, ordered stop
inbox.py       the supervisor's end of the notice socket
accounting.py  notices about frames and the camera -> the ledger, the pipeline-wide metrics, the calibration check
calibration_check.py  at start-up: the first frames' scores against those the threshold was calibrated on
ledger.py      frame accounting: every frame ends scored or dropped with a reason
latency_sketch.py  the verdict latencies in fixed memory (log buckets: 0.5 % relative, max exact)
summary.py     the run's summary (table and JSON)
progress.py    the live progress line
metrics.py     Prometheus metrics (multiprocess) and the /metrics endpoint
sdnotify.py    systemd's notify protocol (ready, watchdog, stopping)
throttled_log.py  a log line for an event that can repeat without bound, at most one per interval
services.py    processes beside the stages that carry no frames (the console): start, restart, stop
errors.py      PipelineError

`stream-ad run` and `stream-ad demo` (stream_ad.commands) call run_pipeline(); the pipeline benchmark lives in
benchmarks/pipeline.py, outside the package.
"""
