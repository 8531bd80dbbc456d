"""Where and how networks run: the torch device, and acceleration (eager, OpenVINO, torch.compile, TensorRT) with
its caches."""
