"""The stages: each an object with a lifecycle, `open(ctx)`, `process(frames) -> frames`, `close()`. Everything
around a stage (sockets, queues, batching, the drop policy, metrics, signals, restarts) is the shell's
(stream_ad.pipeline.shell).

base.py        the Stage interface, StageContext, BadFrame
source.py      the camera the source stage reads (it has no input: the shell iterates the camera)
preprocess.py  frame -> normalised model inputs (on CUDA: validated and forwarded, infer preprocesses on the GPU)
infer.py       a dynamic batch -> backbone + scorer (a runtime artefact: one OpenVINO call) -> a score (and map) each
decide.py      score > threshold -> verdict
sink.py        verdicts -> every configured sink
registry.py    stage names -> classes (a custom middle stage: "package.module:Class")
"""
