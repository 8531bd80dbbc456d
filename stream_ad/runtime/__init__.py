"""Where and how networks run: the torch device, and acceleration (eager, OpenVINO, torch.compile, TensorRT) with
its caches; how a stream_ad process sets up logging (logs.py)."""
