"""The run plan: settings -> the stage processes and the endpoints that connect them. A pure function (nothing starts,
nothing binds); the supervisor writes the plan to the run folder as JSON and every stage process reads it back.

    stage i binds its input at  pipeline.<stage>.endpoint, else tcp://127.0.0.1:(tcp_base_port + i) with transport
                                tcp, else ipc://RUN_DIR/<label>.sock
    stage i-1 connects to       pipeline.<stage>.connect (another host), else what stage i binds
    every stage reports to      pipeline.supervisor.endpoint, else index 0 of the same scheme ("supervisor")
    pipeline.console enabled:   the console binds its tap (the sink stage sends to it), the infer stage its teaching
                                channel: pipeline.console.*_endpoint, else ipc://RUN_DIR/<name>.sock (ipc only:
                                a local user must not reach the teaching channel over tcp)

Each run has an identity of its own (RunIdentity.new(), the one impure part, made by the caller): a run id that every
verdict carries, and the id of its first frame.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
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
    label: str  # the stage in metrics and logs
    bind: str | None  # input endpoint (None: the source)
    connect: str | None  # downstream endpoint (None: the last stage)
    queue_size: int = 8
    policy: str = "drop_oldest"
    max_batch: int = 1
    max_wait_ms: float = 0.0


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
class ConsoleWiring:
    """Where the operator's console meets the stages (pipeline.console)."""

    tap: str  # the console binds it; the sink stage sends it the verdicts, bounded and drop-oldest
    control: str  # the infer stage binds it; the console sends it teaching requests


@dataclass(frozen=True)
class RunPlan:
    settings: Settings
    stages: tuple[StageSpec, ...]  # in pipeline order, the source first
    notices: str  # where every stage sends its notices (the supervisor binds it)
    model_dir: Path  # the infer stage's model artefact
    threshold: float  # the decide stage's
    model: ModelInfo  # the sinks': which model judged, its pixel threshold (the alarm store records and draws them)
    run_id: str  # RunIdentity.run_id: every verdict of the run carries it
    first_frame_id: int  # the id of the run's first frame; its frames are numbered on from it without gaps
    send_maps: bool  # a sink or the console draws anomaly maps: preprocess keeps the image and infer sends the maps
    console: ConsoleWiring | None = None  # None: pipeline.console is off

    def stage(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise KeyError(f"no stage {name!r} in this plan; it has {', '.join(s.name for s in self.stages)}")

    def to_json(self) -> str:
        return json.dumps({
            "settings": self.settings.model_dump(mode="json"),
            "stages": [asdict(spec) for spec in self.stages],
            "notices": self.notices,
            "model_dir": str(self.model_dir),
            "threshold": self.threshold,
            "model": asdict(self.model),
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
            model_dir=Path(raw["model_dir"]),
            threshold=raw["threshold"],
            model=ModelInfo(**raw["model"]),
            send_maps=raw["send_maps"],
            run_id=raw["run_id"],
            first_frame_id=raw["first_frame_id"],
            console=ConsoleWiring(**raw["console"]) if raw.get("console") else None,
        )


def stage_label(name: str) -> str:
    """A short metric/log label: the class name of a custom stage ("package.module:Class")."""
    return name.rpartition(":")[2]


@dataclass(frozen=True)
class Wiring:
    """The stage processes and the endpoints that connect them (what `stream-ad check` tests before a run)."""

    stages: tuple[StageSpec, ...]  # in pipeline order, the source first
    notices: str  # where every stage sends its notices
    console: ConsoleWiring | None = None


def plan_wiring(settings: Settings, run_dir: Path) -> Wiring:
    cfg = settings.pipeline

    def endpoint(index: int, label: str, explicit: str | None, transport: str = cfg.transport) -> str:
        if explicit:
            return explicit
        if transport == "tcp":
            return f"tcp://127.0.0.1:{cfg.tcp_base_port + index}"
        return f"ipc://{run_dir}/{label}.sock"

    source, *rest = cfg.stages
    inputs = [(name, getattr(cfg, name) if name in CONFIGURED_STAGES else StageSettings()) for name in rest]
    binds = [endpoint(i, stage_label(name), sc.endpoint) for i, (name, sc) in enumerate(inputs, start=1)]
    targets = [sc.connect or bind for (_, sc), bind in zip(inputs, binds)]
    specs = [StageSpec(source, stage_label(source), None, cfg.source.connect or targets[0], policy=cfg.policy)]
    for i, (name, sc) in enumerate(inputs):
        downstream = targets[i + 1] if i + 1 < len(targets) else None
        specs.append(StageSpec(name, stage_label(name), binds[i], downstream, queue_size=sc.queue_size,
                               policy=sc.policy or cfg.policy, max_batch=sc.max_batch, max_wait_ms=sc.max_wait_ms))
    console = None
    if cfg.console.enabled:
        n = len(specs)
        console = ConsoleWiring(endpoint(n, "console-tap", cfg.console.tap_endpoint, "ipc"),
                                endpoint(n + 1, "infer-control", cfg.console.control_endpoint, "ipc"))
    return Wiring(tuple(specs), endpoint(0, "supervisor", cfg.supervisor.endpoint), console)


def plan_run(settings: Settings, *, model_dir: Path, threshold: float, model: ModelInfo, run_dir: Path,
             run: RunIdentity) -> RunPlan:
    wiring = plan_wiring(settings, run_dir)
    return RunPlan(
        settings=settings,
        stages=wiring.stages,
        notices=wiring.notices,
        model_dir=model_dir,
        threshold=threshold,
        model=model,
        run_id=run.run_id,
        first_frame_id=run.first_frame_id,
        send_maps=settings.pipeline.console.enabled
        or any(SINKS[out.kind].needs_maps for out in settings.pipeline.sink.outputs),
        console=wiring.console,
    )
