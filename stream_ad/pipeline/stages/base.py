"""The Stage interface every middle and last stage implements, and what it gets to open with."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from stream_ad.frames import Frame
from stream_ad.pipeline.metrics import StageMetrics
from stream_ad.pipeline.notices import DropReason
from stream_ad.pipeline.plan import ModelSpec, RunPlan, StageSpec
from stream_ad.settings import Settings, SourceSettings


class BadFrame(ValueError):
    """Raised by a stage for a frame it cannot process (wrong shape, missing field): counted, skipped."""

    reason = DropReason.BAD_FRAME


class BadScore(BadFrame):
    """The model scored a frame NaN or infinite: counted as bad_score, never judged."""

    reason = DropReason.BAD_SCORE


class StageFailed(RuntimeError):
    """Raised by a stage that must not go on (pipeline.sink.on_error: stop): the run stops with this message and a
    non-zero exit status, so that systemd restarts it."""


# drop(frame, reason, detail): the frame ends here, dropped with this reason (told to the supervisor).
DropFrame = Callable[[Frame, str, str], None]


@dataclass(frozen=True)
class StageContext:
    """What a stage opens with: the run plan (settings, threshold, model), its own spec, its metrics, the stop flag,
    how to drop a frame with a reason of its own, and how to show it is not stuck."""

    plan: RunPlan
    spec: StageSpec
    metrics: StageMetrics
    stop: threading.Event  # set on SIGTERM
    drop: DropFrame
    first_id: int = 0  # the source: the id of the first frame it reads (plan.first_frame_id, or on after a restart)
    # A stage whose work on one batch may outlast pipeline.supervisor.hung_after_s by right (many alarm pictures to
    # store) calls it between the batch's items: proof that it is not stuck (stream_ad.pipeline.liveness).
    alive: Callable[[], None] = field(default=lambda: None)

    @property
    def settings(self) -> Settings:
        """The settings this stage runs with: its model's (the artefact's preprocessing and scorer) for a stage of one
        model's chain, else the run's."""
        return self.model.settings if self.spec.model is not None else self.plan.settings

    @property
    def model(self) -> ModelSpec:
        """The model whose chain this stage is part of (a source: the model its camera's frames go to)."""
        if self.spec.model is None:
            raise ValueError(f"stage {self.spec.label} serves every model, not one")
        return self.plan.model_spec(self.spec.model)

    @property
    def camera(self) -> tuple[str, SourceSettings]:
        """A source's camera: the setting that configures it ("pipeline.cameras.2") and its section."""
        for where, cam in self.plan.settings.pipeline.camera_sections():
            if cam.camera == self.spec.camera:
                return where, cam
        raise ValueError(f"stage {self.spec.label} reads no camera of this plan")


class Stage(ABC):
    """open() once in the stage's process before the first frame (load a model, open sinks), process() per batch,
    close() once on the way out (not after a failed open: the process reports it and exits). A frame the stage
    cannot process raises BadFrame; one it drops for a reason of its own goes to ctx.drop; a stage that returns fewer
    frames than it got has filtered the others (counted). StageFailed stops the run."""

    # Batches the shell may hand process() at once, from as many threads (set by open(); the frames still leave in
    # the order their batches were taken). More than 1 only for a stage whose process() is thread-safe and gains
    # from it: the infer stage on OpenVINO requests side by side.
    concurrent_batches: int = 1

    def open(self, ctx: StageContext) -> None:  # a stage that needs nothing opened keeps this one
        """Acquire what process() needs."""

    @abstractmethod
    def process(self, frames: list[Frame]) -> list[Frame]: ...

    def close(self) -> None:  # a stage that holds nothing keeps this one
        """Release what open() acquired."""
