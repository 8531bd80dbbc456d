"""Benchmarks of stream_ad against its peers, outside the product: nothing in stream_ad imports this package.

`python -m benchmarks {patchcore,pipeline,accel,cameras}` from the checkout (`EXTRAS=bench bash scripts/setup.sh`
installs the peers: anomalib, onnxscript).

patchcore.py           stream_ad's PatchCore side by side with anomalib's (accuracy, fit time, images/s)
accel.py               the runtime.accelerate paths side by side, anomalib's OpenVINO export as the CPU peer
pipeline.py            the multi-process pipeline against in-process scoring, the highest sustained camera rate
cameras.py             N cameras in one pipeline against N single-camera pipelines (frames/s, latency, memory)
ready.py               start-up to READY=1 of `stream-ad run`, installs side by side (stdlib only: `python
                       benchmarks/ready.py`, from a line install too)
harness.py             one measured job in a child process (same fit, same images, same timing for every side)
anomalib_peer.py       anomalib's PatchCore on the same backbone weights
anomalib_openvino.py   anomalib's OpenVINO export of it
timm_mobilenet.py      the shared MobileNetV2 weights mapped into timm's (anomalib's backbone library)
"""
