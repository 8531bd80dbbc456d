"""How the backbone, or a scorer's own network, runs (runtime.accelerate): one small interface, one wrapper per path.

Every path maps a (B, 3, S, S) float32 tensor to the module's outputs as a list (a backbone's taps in
`backbone.layers` order, exactly as Backbone.forward gives them; EfficientAD's maps), so a scorer swaps one for the
other without other changes:

- eager: the BN-folded, channels-last torchvision module (stream_ad.backbones.loader).
- torch_compile: torch.compile (inductor); on CUDA with CUDA graphs ("reduce-overhead"). Shapes are fixed per
  bucket: a batch is zero-padded up to the next power of two, so batches 1..N compile at most log2(N) + 1 graphs.
- openvino: the module converted once to OpenVINO IR with a dynamic batch dimension and compiled for the CPU
  (f32 inference precision, runtime threads); one compilation serves every batch size. A scorer may convert its
  whole scoring graph around the backbone instead (openvino_graph; PaDiM does), or a head over the backbone's taps
  with its fitted state put in as constants at each compile (openvino_head; PatchCore does).
- tensorrt: torch-tensorrt (the `tensorrt` extra), fp16 or INT8 (calibrated on good images), one engine with a
  dynamic batch profile 1..max_batch; larger batches run in max_batch chunks.

Converted models and engines are cached under runtime.cache_dir, keyed by the module's identity (backbone name,
weights sha256, taps; a scorer network's weights and code hashes), input shape and batch range, precision and library
versions, so a restart reuses them instead of rebuilding. Each entry carries the sha256 of its files (SHA256SUMS,
sealed when it is built), checked when it is reused: a file changed, missing or added, or no sums, make it stale, and a
stale entry is rebuilt (one log line), never used.
`auto` takes the best path available on the device and logs which and why.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

import torch

import stream_ad
from stream_ad.backbones.loader import Backbone, BackboneError
from stream_ad.runtime.checksums import mismatch, seal
from stream_ad.runtime.openvino import Requests, compile_for_cpu, decline_openvino_telemetry, save_ir

log = logging.getLogger(__name__)

Mode = Literal["auto", "tensorrt", "torch_compile", "openvino", "eager"]
Precision = Literal["auto", "fp32", "fp16", "int8"]
INSTALL = {
    "openvino": "pip install 'stream-ad[openvino]' (or EXTRAS=openvino bash scripts/setup.sh)",
    "tensorrt": "pip install 'stream-ad[tensorrt]' on a machine with an NVIDIA GPU",
}
# Relative error bound of each path's taps against eager on the same inputs (tests/runtime/test_accelerate.py).
RTOL = {"fp32": 1e-3, "fp16": 2e-2, "int8": 1.5e-1}


class AccelerateError(BackboneError):
    """A requested runtime.accelerate path cannot run here; the message says why and what to install."""


@dataclass(frozen=True)
class AccelerateSpec:
    """What a scorer needs to build its backbone's execution path (from RuntimeSettings and the pipeline)."""

    mode: Mode = "eager"
    precision: Precision = "auto"
    cache_dir: Path | None = None  # None: nothing cached on disk
    max_batch: int = 32  # largest batch served without splitting (TensorRT's profile; a bound, not a bucket)
    streams: int = 1  # OpenVINO: requests run side by side, a batch split across them (compile_for_cpu says when)
    # Good-image batches for INT8 calibration; called only when an INT8 engine has to be built.
    calibration: Callable[[], Iterable[torch.Tensor]] | None = None


class Features(Protocol):
    path: str  # eager | torch_compile | openvino | tensorrt
    precision: str

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]: ...


def unavailable(path: str, device: torch.device) -> str | None:
    """Why `path` cannot run on `device`, or None when it can."""
    if path == "openvino":
        if device.type != "cpu":
            return f"the openvino path runs on the CPU; runtime.device resolved to {device}"
        if importlib.util.find_spec("openvino") is None:
            return f"openvino is not installed: {INSTALL['openvino']}"
    if path == "tensorrt":
        if device.type != "cuda":
            return f"TensorRT needs a CUDA device; runtime.device resolved to {device}"
        if importlib.util.find_spec("torch_tensorrt") is None:
            return f"torch-tensorrt is not installed: {INSTALL['tensorrt']}"
    return None


def choose_path(mode: Mode, device: torch.device) -> tuple[str, str]:
    """The path to run and why. An explicit mode that cannot run is an AccelerateError naming the setting."""
    if mode != "auto":
        why = unavailable(mode, device)
        if why is not None:
            raise AccelerateError(f"runtime.accelerate is {mode!r} but {why}")
        return mode, "asked for (runtime.accelerate)"
    # CUDA: TensorRT, else torch.compile. CPU: OpenVINO, measured faster than eager (docs/pipeline.md).
    order = ("tensorrt", "torch_compile") if device.type == "cuda" else ("openvino",)
    skipped = []
    for path in order:
        why = unavailable(path, device)
        if why is None:
            return path, f"auto on {device.type}: best available" + (f" ({'; '.join(skipped)})" if skipped else "")
        skipped.append(why)
    return "eager", f"auto on {device.type}: {'; '.join(skipped)}"


def resolve_precision(path: str, precision: Precision) -> str:
    if precision == "auto":
        return "fp16" if path == "tensorrt" else "fp32"
    if precision != "fp32" and path != "tensorrt":
        raise AccelerateError(f"runtime.precision {precision!r} needs runtime.accelerate 'tensorrt'; {path} runs fp32")
    return precision


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_key(identity: Mapping[str, str], path: str, input_size: int, max_batch: int, precision: str,
              graph: dict[str, object] | None = None) -> str:
    """Folder name of a converted model or engine: everything that, changed, makes it stale.

    `identity`: the module's (Backbone.identity(), or a scorer network's name, weights hash and code hash); `graph`:
    what a scorer's whole scoring graph holds beyond the backbone (its state's hash, its settings).
    """
    libraries = {"openvino": ("openvino",), "tensorrt": ("torch-tensorrt", "tensorrt")}.get(path, ())
    what = {
        **identity,
        **({"graph": graph} if graph is not None else {}),
        "path": path,
        "input": [3, input_size, input_size],
        "batch": [1, max_batch],
        "precision": precision,
        "versions": {"stream_ad": stream_ad.__version__, "torch": torch.__version__,
                     **{lib: _version(lib) for lib in libraries}},
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return f"{identity['name']}-{path}{'-graph' if graph is not None else ''}-{precision}-{digest}"


def _build_once(folder: Path, build: Callable[[Path], None]) -> bool:
    """Reuse `folder` if its files match the SHA256SUMS sealed when it was built; else (none yet, or stale: a file
    changed, missing or added, or no sums) run build(tmp) into a fresh folder, seal it and move it to `folder`. True
    if built. The rename is atomic, so a process starting meanwhile sees a complete cache entry or none."""
    if folder.exists():
        if _stale(folder) is None:
            return False
        shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    seal(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process finished first: its entry is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def _stale(folder: Path) -> str | None:
    """Why the cache entry `folder` must not be used (logged, one line), or None when its files match their sums."""
    why = mismatch(folder)
    if why is not None:
        log.warning("cache entry %s is stale (%s): rebuilding it, never using it", folder, why)
    return why


def _clear_if_stale(folder: Path) -> None:
    """A cache a library writes itself (TensorRT's engines, inductor's kernels): removed unless its files match the
    sums sealed after it last wrote them, so the library rebuilds instead of loading a damaged or foreign file."""
    if folder.exists() and _stale(folder) is not None:
        shutil.rmtree(folder, ignore_errors=True)


class Eager:
    path = "eager"
    precision = "fp32"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.module(x))


def bucket(n: int) -> int:
    """The fixed batch shape a batch of n runs at: the next power of two."""
    return 1 << (n - 1).bit_length()


class TorchCompiled:
    path = "torch_compile"
    precision = "fp32"

    def __init__(self, module: torch.nn.Module, device: torch.device, cache_dir: Path | None) -> None:
        # inductor's FX graph and kernel caches: a restart compiles from them. Checked against the sums sealed after
        # each new bucket compiled (compilation is lazy), unless the environment points inductor elsewhere.
        self.cache: Path | None = None
        if cache_dir is not None:
            wanted = cache_dir / "inductor"
            if os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(wanted)) == str(wanted):
                self.cache = wanted
                _clear_if_stale(wanted)
        self.buckets: set[int] = set()
        # reduce-overhead = CUDA graphs: one captured graph per bucket replays with no launch overhead.
        mode = "reduce-overhead" if device.type == "cuda" else "default"
        self.cuda_graphs = device.type == "cuda"
        self.fn = torch.compile(module, mode=mode, dynamic=False, fullgraph=True)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = x.shape[0]
        padded = bucket(n)
        if padded != n:
            x = torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))])
        out = self.fn(x)
        if padded not in self.buckets:  # compiled (or loaded from the cache) just now
            self.buckets.add(padded)
            if self.cache is not None and self.cache.exists():
                seal(self.cache)
        # A CUDA graph's outputs are overwritten by its next replay: the caller gets copies.
        return [t[:n].clone() if self.cuda_graphs else t[:n] for t in out]


def to_openvino(module: torch.nn.Module, input_size: int) -> Any:
    """`module` ((B, 3, S, S) -> tensors) as an OpenVINO model with a dynamic batch dimension: one compilation
    serves every batch size."""
    import openvino as ov

    return _convert(module, (torch.zeros(1, 3, input_size, input_size),),
                    [ov.PartialShape([-1, 3, input_size, input_size])])


def _convert(module: torch.nn.Module, example: tuple[torch.Tensor, ...], shapes: list[Any]) -> Any:
    """`module` traced on `example` and converted, its inputs of `shapes` (openvino.PartialShape each)."""
    decline_openvino_telemetry()
    import openvino as ov

    # The tracer warns of Python branches on shapes; every one depends on input_size alone, which is fixed.
    # OpenVINO's converter traces with torch.jit.trace, which torch deprecates in favour of torch.export:
    # the converter's concern, and not one a line operator can act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace", FutureWarning, r"torch\.jit\._trace")
        return ov.convert_model(module.cpu().eval(), example_input=example, input=shapes)


def _ir(cache: Path | None, convert: Callable[[], Any]) -> Any:
    """An OpenVINO model: read from its cache entry `cache` (built by convert() first if missing or stale), or
    converted afresh where nothing is cached."""
    if cache is None:
        return convert()
    import openvino as ov

    built = _build_once(cache, lambda folder: save_ir(convert(), folder / "model.xml"))
    log.info("openvino: %s model %s", "converted" if built else "cached", cache)
    return ov.Core().read_model(cache / "model.xml")


class OpenVino:
    """An OpenVINO model ((B, 3, S, S) -> tensors) compiled for the CPU: the backbone alone, or a scorer's whole
    scoring graph (openvino_graph, openvino_head)."""

    path = "openvino"
    precision = "fp32"

    def __init__(self, model: Any, streams: int = 1, batch: int | None = None) -> None:
        """`batch`: compiled for that static batch size (compile_for_cpu), else for any."""
        # runtime.threads / the infer stage set torch's threads: OpenVINO's take the same number.
        self.compiled = compile_for_cpu(model, torch.get_num_threads(), streams, batch)
        self.compilations = 1
        self.requests = Requests(self.compiled, streams)
        self.outputs = list(self.compiled.outputs)

    def dynamic_batch(self) -> bool:
        return self.compiled.input(0).get_partial_shape()[0].is_dynamic

    def __call__(self, x: torch.Tensor, most: int = 0) -> list[torch.Tensor]:
        """A batch in calls of at most `most` images (0: any number), split across the streams (Requests.run_batch)."""
        # The layout copy in numpy, not torch: preprocessed inputs are channels-last views, and a torch copy leaves
        # its OpenMP threads spinning on the cores OpenVINO's threads need (~4 ms of a 12 ms call on 2 cores).
        inputs = x.detach().cpu().float().numpy()
        return [torch.from_numpy(out) for out in self.requests.run_batch(inputs, self.outputs, most)]


class TensorRt:
    path = "tensorrt"

    def __init__(self, module: torch.nn.Module, input_size: int, spec: AccelerateSpec, precision: str,
                 cache: Path | None) -> None:
        import torch_tensorrt

        self.precision = precision
        self.max_batch = spec.max_batch
        side = (3, input_size, input_size)
        inputs = [torch_tensorrt.Input(min_shape=(1, *side), opt_shape=(spec.max_batch, *side),
                                       max_shape=(spec.max_batch, *side), dtype=torch.float32)]
        if precision == "int8":
            module = _int8_quantized(module, spec)
        cache_args = {} if cache is None else {
            "cache_built_engines": True, "reuse_cached_engines": True, "engine_cache_dir": str(cache)
        }
        if cache is not None:
            _clear_if_stale(cache)
        dtypes = {"fp16": {torch.float16, torch.float32}, "int8": {torch.int8, torch.float16, torch.float32}}
        self.module = torch_tensorrt.compile(module, ir="dynamo", inputs=inputs,
                                             enabled_precisions=dtypes[precision], **cache_args)
        if cache is not None and cache.exists():
            seal(cache)  # the engines just built or reused: checked at the next start

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        chunks = [self.module(part.contiguous()) for part in x.split(self.max_batch)]
        return [torch.cat(taps).float() for taps in zip(*chunks)]


def _int8_quantized(module: torch.nn.Module, spec: AccelerateSpec) -> torch.nn.Module:
    """INT8 fake-quantised copy of the module, its ranges calibrated on good images (NVIDIA modelopt)."""
    if spec.calibration is None:
        raise AccelerateError("runtime.precision 'int8' needs good images to calibrate on; none were given")
    try:
        import modelopt.torch.quantization as mtq
    except ImportError:
        raise AccelerateError("runtime.precision 'int8' needs nvidia-modelopt: pip install nvidia-modelopt") from None

    def calibrate(model: torch.nn.Module) -> None:
        for batch in spec.calibration():  # type: ignore[misc]
            model(batch.to(next(module.parameters()).device))

    return mtq.quantize(module, mtq.INT8_DEFAULT_CFG, forward_loop=calibrate)


def _scorer_sources(module: ModuleType, seen: set[str]) -> None:
    """`module`'s source file and, recursively, those of the scorer modules its names come from (the shared
    components a graph's module calls: the map and blur in scorers/components)."""
    path = getattr(module, "__file__", None)
    if path is None or path in seen:
        return
    seen.add(path)
    for value in vars(module).values():
        source = value if isinstance(value, ModuleType) else inspect.getmodule(value)
        if source is not None and source.__name__.startswith("stream_ad.scorers."):
            _scorer_sources(source, seen)


def source_sha256(*classes: type) -> str:
    """Hash of the source files defining `classes` and of the scorer modules they draw on: part of a converted
    graph's cache key, since a graph changed in code under the same version number is another graph (a stale entry
    reused this way once served an older, 2x slower kNN)."""
    seen: set[str] = set()
    for c in classes:
        module = inspect.getmodule(c)
        if module is not None:
            _scorer_sources(module, seen)
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in seen):
        h.update(path.read_bytes() if path.is_file() else b"unknown")
    return h.hexdigest()


def _cache_entry(spec: AccelerateSpec, key: str) -> Path | None:
    return None if spec.cache_dir is None else spec.cache_dir / key


def openvino_graph(module: torch.nn.Module, backbone: Backbone, input_size: int, spec: AccelerateSpec,
                   graph: dict[str, object], batch: int | None = None) -> OpenVino:
    """A scorer's whole scoring graph around `backbone`, compiled by OpenVINO (for a static `batch`, else any) and
    cached (on runtime.cache_dir) under the backbone's key plus `graph`, what else the module holds (see cache_key),
    plus the module's source."""
    key = cache_key(backbone.identity(), "openvino", input_size, spec.max_batch, "fp32",
                    {**graph, "code_sha256": source_sha256(type(module))})
    return OpenVino(_ir(_cache_entry(spec, key), lambda: to_openvino(module, input_size)), spec.streams, batch)


def openvino_head(head: torch.nn.Module, state: tuple[torch.Tensor, ...], backbone: Backbone, input_size: int,
                  spec: AccelerateSpec, graph: dict[str, object], batch: int | None = None) -> OpenVino:
    """A scorer's whole scoring graph as `head` ((taps..., *state) -> outputs) over `backbone`, its fitted `state` put
    in as constants, compiled by OpenVINO (for a static `batch`, else any).

    The backbone's IR (the one accelerate_backbone caches) and the head's are converted once, the head's with the
    state as inputs of any size, and cached (on runtime.cache_dir) under the backbone's key plus `graph` and the head's
    source, with no state in them; each state is joined to them as constants when compiling, which folds and packs
    them as it would baked-in ones. A new state (a fit, a teaching's grown bank) thus costs a compile (0.2 s), not a
    conversion of the whole graph (2.3 s; 224 px, a bank of 9,136, 2 cores), and leaves nothing more in the cache."""
    import openvino as ov

    def convert_head() -> Any:  # only on a cache miss: the taps' shapes take a backbone call in torch
        with torch.no_grad():
            taps = tuple(t.cpu() for t in backbone(torch.zeros(1, 3, input_size, input_size)))
        shapes = [ov.PartialShape([-1, *t.shape[1:]]) for t in taps] + [ov.PartialShape([-1] * t.dim()) for t in state]
        return _convert(head, (*taps, *state), shapes)

    key = cache_key(backbone.identity(), "openvino", input_size, spec.max_batch, "fp32")
    body = _ir(_cache_entry(spec, key), lambda: to_openvino(backbone, input_size))
    key = cache_key(backbone.identity(), "openvino", input_size, spec.max_batch, "fp32",
                    {**graph, "head_code_sha256": source_sha256(type(head))})
    return OpenVino(_joined(body, _ir(_cache_entry(spec, key), convert_head), state), spec.streams, batch)


def _joined(body: Any, head: Any, state: tuple[torch.Tensor, ...]) -> Any:
    """One OpenVINO model: `body`'s outputs fed to `head`'s first inputs, `state` to its others as constants."""
    import openvino as ov
    import openvino.opset13 as ops

    inputs = head.get_parameters()
    for param, result in zip(inputs[: len(inputs) - len(state)], body.get_results(), strict=True):
        tap = result.input_value(0)
        tap.remove_target_input(result.input(0))  # the body's output ends in the head now, not in a result
        _feed(param, tap)
    for param, tensor in zip(inputs[len(inputs) - len(state):], state, strict=True):
        _feed(param, ops.constant(tensor.detach().cpu().numpy()).output(0))
    return ov.Model(head.get_results(), body.get_parameters(), "scoring_graph")


def _feed(param: Any, source: Any) -> None:
    """Everything that read `param` reads `source` instead."""
    for target in list(param.output(0).get_target_inputs()):
        target.replace_source_output(source)


def accelerate_backbone(
    backbone: Backbone, device: torch.device, input_size: int, spec: AccelerateSpec
) -> Features:
    """The backbone behind the path runtime.accelerate picks on `device`; logs which and why."""
    return accelerate_module(backbone, backbone.identity(), device, input_size, spec)


def accelerate_module(
    module: torch.nn.Module, identity: Mapping[str, str], device: torch.device, input_size: int, spec: AccelerateSpec
) -> Features:
    """Any network from (B, 3, S, S) inputs to a sequence of tensors (a backbone's taps, a scorer's maps) behind the
    path runtime.accelerate picks on `device`, cached under `identity` (see cache_key); logs which and why."""
    path, why = choose_path(spec.mode, device)
    precision = resolve_precision(path, spec.precision)
    key = cache_key(identity, path, input_size, spec.max_batch, precision)
    cache = _cache_entry(spec, key)
    if path == "openvino":
        features: Features = OpenVino(_ir(cache, lambda: to_openvino(module, input_size)), spec.streams)
    elif path == "tensorrt":
        features = TensorRt(module, input_size, spec, precision, cache)
    elif path == "torch_compile":
        features = TorchCompiled(module, device, spec.cache_dir)
    else:
        features = Eager(module)
    log.info("%s runs %s (%s) on %s: %s", identity["name"], path, precision, device, why)
    return features
