"""The streaming pipeline: camera -> source -> preprocess -> infer -> decide -> sinks, one process per stage.

message.py     a frame on the wire (JSON header + raw buffers, no pickle)
batching.py    the bounded queue in front of each stage, its drop policy, dynamic batching
stage.py       the shell around every stage function (sockets, queue, batching, metrics, signals), written once
stages.py      the stage functions of the built-in chain
registry.py    stage names a pipeline YAML may list
supervisor.py  starts and restarts the stage processes, stops them in order, serves /metrics
ledger.py      frame accounting: every frame ends scored or dropped with a reason
metrics.py     Prometheus metrics (multiprocess) and the /metrics endpoint
worker.py      the entry point of one stage process
commands.py    `stream-ad run` and the streaming `stream-ad demo`
bench.py       `stream-ad bench-pipeline`
"""
