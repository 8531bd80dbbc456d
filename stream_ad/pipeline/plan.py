"""The run plan: settings -> the stage processes and the endpoints that connect them. A pure function (nothing starts,
nothing binds); the supervisor writes the plan to the run folder as JSON and every stage process reads it back.

One source process per camera (pipeline.cameras, else pipeline.source); the middle stages once per model artefact
(the cameras of one artefact share its preprocess, infer and decide processes: one model loaded once, frames of all
its cameras batched together); the last stage once for the whole run:

    source-a ─┐                                                      ┌─▶ sink
    source-b ─┴─▶ preprocess-m0 ─▶ infer-m0 ─▶ decide-m0 ────────────┤
    source-c ───▶ preprocess-m1 ─▶ infer-m1 ─▶ decide-m1 ────────────┘

Labels: with pipeline.source, "source" and the stage names; with pipeline.cameras, "source-CAMERA" and
"NAME-MODELKEY" ("infer-m1"), whatever their number: a reload that adds cameras and models leaves every running
stage's label and endpoint as it was. Endpoints:

    a stage binds its input at  pipeline.<stage>.endpoint (pipeline.source only), else with transport tcp
                                tcp://127.0.0.1:(tcp_base_port + i): i = 1 + K * (M + 1) + j for the j-th of the M
                                middle stages of model mK, M + 1 for the last stage; else ipc://RUN_DIR/<label>.sock
    the stage before connects   pipeline.<stage>.connect (another host), else what that stage binds
    every stage reports to      pipeline.supervisor.endpoint, else index 0 of the same scheme ("supervisor")
    pipeline.console enabled:   the console binds its tap (the sink stage sends to it), each model's infer stage its
                                own teaching channel: pipeline.console.*_endpoint (the control endpoint with one
                                model only), else ipc://RUN_DIR/console-tap.sock and ipc://RUN_DIR/infer-control.sock
                                (infer-control-MODELKEY.sock with pipeline.cameras); ipc only: a local user must not
                                reach a teaching channel over tcp

Each run has an identity of its own (RunIdentity.new(), the one impure part, made by the caller): a run id that every
verdict carries, and the id of its first frame (each camera numbers its frames on from it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from stream_ad.frames import ModelInfo
from stream_ad.settings import Settings, StageSettings
from stream_ad.sinks import SINKS

# The stages whose queue and batching have their own section in pipeline (pipeline.<name>); a custom stage gets the
# defaults of StageSettings.
CONFIGURED_STAGES = ("preprocess", "infer", "decide", "sink")


@dataclass(frozen=True)
class StageSpec:
    """What one stage process needs to wire itself up: its input, its output and the queue in front of it."""

    name: str  # as listed in pipeline.stages: a built-in name or "package.module:Class"
    label: str  # the stage in metrics and logs, unique in the run
    bind: str | None  # input endpoint (None: a source)
    connect: str | None  # downstream endpoint (None: the last stage)
    queue_size: int = 8
    policy: str = "drop_oldest"
    max_batch: int = 1
    max_wait_ms: float = 0.0
    camera: str | None = None  # a source: the camera it reads
    model: str | None = None  # a stage of one model's chain (and a source): ModelSpec.key


@dataclass(frozen=True)
class ModelSpec:
    """One model artefact the run serves, and what its stages need of it."""

    key: str  # "m0", "m1", ... in the order the cameras name them: part of its stages' labels
    model_dir: Path
    threshold: float  # its decide stage's
    info: ModelInfo  # the sinks': which model judged, its pixel threshold (the alarm store records and draws them)
    settings: Settings  # what its stages run with: the pipeline's, with the artefact's preprocessing and scorer


@dataclass(frozen=True)
class RunIdentity:
    """What tells one `stream-ad run` from every other: its id (in every verdict record) and its first frame id."""

    run_id: str
    first_frame_id: int

    @classmethod
    def new(cls) -> RunIdentity:
        # Frame ids start at the wall clock in microseconds and count up by one per frame, so a later run (a restart,
        # a reboot) starts above every id of an earlier one: a camera would need more than a million frames a second
        # to overtake the clock. Derived, not persisted: nothing to lose with the disk, nothing to write before the
        # first frame. They stay below 2**53 (exact in JSON) for centuries; a clock set back repeats ids.
        return cls(str(uuid.uuid4()), time.time_ns() // 1000)


@dataclass(frozen=True)
class ModelControl:
    """One model's teaching channel: its infer stage binds it; the console sends it teaching requests."""

    model: str  # ModelSpec.key
    endpoint: str


@dataclass(frozen=True)
class ConsoleWiring:
    """Where the operator's console meets the stages (pipeline.console)."""

    tap: str  # the console binds it; the sink stage sends it the verdicts, bounded and drop-oldest
    controls: tuple[ModelControl, ...]  # one per model the plan serves

    def control(self, model: str) -> str:
        """The teaching channel of model `model` (its key)."""
        for control in self.controls:
            if control.model == model:
                return control.endpoint
        raise KeyError(f"no teaching channel for model {model!r}; the plan has "
                       f"{', '.join(c.model for c in self.controls)}")


@dataclass(frozen=True)
class RunPlan:
    settings: Settings
    stages: tuple[StageSpec, ...]  # the sources first (one per camera), then each model's chain, the last stage last
    notices: str  # where every stage sends its notices (the supervisor binds it)
    models: tuple[ModelSpec, ...]  # in key order; every source names one
    run_id: str  # RunIdentity.run_id: every verdict of the run carries it
    first_frame_id: int  # the id of each camera's first frame; its frames are numbered on from it without gaps
    send_maps: bool  # a sink or the console draws anomaly maps: preprocess keeps the image and infer sends the maps
    console: ConsoleWiring | None = None  # None: pipeline.console is off

    def model_spec(self, key: str) -> ModelSpec:
        for model in self.models:
            if model.key == key:
                return model
        raise KeyError(f"no model {key!r} in this plan; it has {', '.join(m.key for m in self.models)}")

    def stage(self, label: str) -> StageSpec:
        """The stage of this label (or, where it is unique, of this name in pipeline.stages)."""
        for spec in self.stages:
            if spec.label == label:
                return spec
        named = [spec for spec in self.stages if spec.name == label]
        if len(named) == 1:
            return named[0]
        raise KeyError(f"no stage {label!r} in this plan; it has {', '.join(s.label for s in self.stages)}")

    @property
    def sources(self) -> tuple[StageSpec, ...]:
        return tuple(spec for spec in self.stages if spec.bind is None)

    def to_json(self) -> str:
        return json.dumps({
            "settings": self.settings.model_dump(mode="json"),
            "stages": [asdict(spec) for spec in self.stages],
            "notices": self.notices,
            "models": [{"key": m.key, "model_dir": str(m.model_dir), "threshold": m.threshold, "info": asdict(m.info),
                        "settings": m.settings.model_dump(mode="json")} for m in self.models],
            "send_maps": self.send_maps,
            "run_id": self.run_id,
            "first_frame_id": self.first_frame_id,
            "console": asdict(self.console) if self.console else None,
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunPlan:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            settings=Settings.model_validate(raw["settings"]),
            stages=tuple(StageSpec(**spec) for spec in raw["stages"]),
            notices=raw["notices"],
            models=tuple(ModelSpec(m["key"], Path(m["model_dir"]), m["threshold"], ModelInfo(**m["info"]),
                                   Settings.model_validate(m["settings"])) for m in raw["models"]),
            send_maps=raw["send_maps"],
            run_id=raw["run_id"],
            first_frame_id=raw["first_frame_id"],
            console=ConsoleWiring(raw["console"]["tap"], tuple(ModelControl(**c) for c in raw["console"]["controls"]))
            if raw.get("console") else None,
        )


def stage_label(name: str) -> str:
    """A short metric/log label: the class name of a custom stage ("package.module:Class")."""
    return name.rpartition(":")[2]


@dataclass(frozen=True)
class Wiring:
    """The stage processes and the endpoints that connect them (what `stream-ad check` tests before a run)."""

    stages: tuple[StageSpec, ...]  # the sources first, then each model's chain, the last stage last
    notices: str  # where every stage sends its notices
    console: ConsoleWiring | None = None


def model_keys(settings: Settings) -> dict[str, str]:
    """camera -> the key of its model ("m0", "m1", ... in the order the cameras first name them), by the artefact
    paths as the settings name them (what `stream-ad check` wires; a run keys the resolved artefacts: served.py)."""
    cameras = [cam for _, cam in settings.pipeline.camera_sections()]
    paths = {cam.camera: cam.model or settings.pipeline.model for cam in cameras}
    keys: dict[Path | None, str] = {}
    for path in paths.values():
        keys.setdefault(path, f"m{len(keys)}")
    return {camera: keys[path] for camera, path in paths.items()}


def plan_wiring(settings: Settings, run_dir: Path, camera_models: Mapping[str, str] | None = None) -> Wiring:
    """`camera_models`: camera -> its model key ("m0", "m1", ...: model_keys); default: model_keys(settings)."""
    cfg = settings.pipeline
    camera_models = camera_models or model_keys(settings)
    keys = list(dict.fromkeys(camera_models.values()))
    many = bool(cfg.cameras)  # labels with the camera and the model, also for one of each
    source, *rest = cfg.stages
    *middle, (last_name, last_cfg) = [(name, getattr(cfg, name) if name in CONFIGURED_STAGES else StageSettings())
                                      for name in rest]
    fixed = [f"pipeline.{name}.endpoint" for name, sc in middle if sc.endpoint or sc.connect]
    if many and fixed:
        raise ValueError(f"{', '.join(fixed)}: with pipeline.cameras each model's stages get endpoints of their own; "
                         "leave it unset")

    def endpoint(index: int, label: str, explicit: str | None, transport: str = cfg.transport) -> str:
        if explicit:
            return explicit
        if transport == "tcp":
            return f"tcp://127.0.0.1:{cfg.tcp_base_port + index}"
        return f"ipc://{run_dir}/{label}.sock"

    def stage(name: str, sc: StageSettings, label: str, bind: str, model: str | None = None) -> StageSpec:
        return StageSpec(name, label, bind, None, queue_size=sc.queue_size, policy=sc.policy or cfg.policy,
                         max_batch=sc.max_batch, max_wait_ms=sc.max_wait_ms, model=model)

    block = len(middle) + 1  # the ports of model mK: a block of its own, so that adding a model moves no other
    last_label = stage_label(last_name)
    last = stage(last_name, last_cfg, last_label, endpoint(block, last_label, last_cfg.endpoint))
    # Where the stage before each one sends: its connect setting (another host), else what it binds.
    reached = [sc.connect for _, sc in middle] + [last_cfg.connect]
    chains: dict[str, list[StageSpec]] = {}
    heads: dict[str, str] = {}  # model key -> where its cameras' sources send
    for key in keys:
        number = int(key.removeprefix("m"))
        chain = []
        for j, (name, sc) in enumerate(middle):
            label = f"{stage_label(name)}-{key}" if many else stage_label(name)
            chain.append(stage(name, sc, label, endpoint(1 + number * block + j, label, sc.endpoint), key))
        targets = [given or spec.bind for given, spec in zip(reached, [*chain, last])]
        chains[key] = [replace(spec, connect=targets[j + 1]) for j, spec in enumerate(chain)]
        heads[key] = str(targets[0])
    sources = [StageSpec(source, f"{stage_label(source)}-{cam.camera}" if many else stage_label(source), None,
                         cam.connect or heads[camera_models[cam.camera]], policy=cfg.policy, camera=cam.camera,
                         model=camera_models[cam.camera])
               for _, cam in cfg.camera_sections()]
    console = None
    if cfg.console.enabled:
        if cfg.console.control_endpoint and len(keys) > 1:
            raise ValueError(f"pipeline.console.control_endpoint: the cameras name {len(keys)} models and each "
                             "model's infer stage binds a teaching channel of its own; leave it unset")
        controls = tuple(ModelControl(key, endpoint(0, f"infer-control-{key}" if many else "infer-control",
                                                    cfg.console.control_endpoint, "ipc")) for key in keys)
        console = ConsoleWiring(endpoint(0, "console-tap", cfg.console.tap_endpoint, "ipc"), controls)
    stages = (*sources, *(spec for key in keys for spec in chains[key]), last)
    return Wiring(stages, endpoint(0, "supervisor", cfg.supervisor.endpoint), console)


def plan_run(settings: Settings, *, models: list[ModelSpec], camera_models: Mapping[str, str], run_dir: Path,
             run: RunIdentity) -> RunPlan:
    """`models`: each artefact served (ModelSpec.key as in `camera_models`: camera -> key)."""
    wiring = plan_wiring(settings, run_dir, camera_models)
    return RunPlan(
        settings=settings,
        stages=wiring.stages,
        notices=wiring.notices,
        models=tuple(models),
        run_id=run.run_id,
        first_frame_id=run.first_frame_id,
        send_maps=settings.pipeline.console.enabled
        or any(SINKS[out.kind].needs_maps for out in settings.pipeline.sink.outputs),
        console=wiring.console,
    )
