"""The operator's console (pipeline.console): a live page served beside the pipeline, teaching "this part is good"
and the drift watch (docs/console.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from stream_ad.settings.base import Strict


class DriftSettings(Strict):
    """Per camera, the recent scores of frames judged ok against the good scores the threshold was calibrated on
    (a one-sided two-sample Kolmogorov-Smirnov test; docs/console.md, "Drift watch")."""

    window: int = Field(100, ge=10, le=100_000)  # the most recent ok scores compared
    # The test's p-value below which the camera counts as drifting (gauge stream_ad_console_drift_detected).
    significance: float = Field(0.001, gt=0.0, lt=1.0)


class ConsoleSettings(Strict):
    """Off by default. On: one more process beside the stages, fed by a bounded, drop-oldest tap from the sink stage
    (never waited on: a closed or slow page costs the line nothing)."""

    enabled: bool = False
    host: str = "127.0.0.1"  # the page is reachable from this machine only unless set otherwise
    port: int = Field(8470, ge=0, le=65535)  # 0: any free port (logged at start)
    # Operators who may teach: one line "NAME TOKEN" each (install -m 640 -g stream-ad). None: nobody may.
    operators_file: Path | None = None
    # Verdicts waiting in the sink stage for the console; past it the oldest goes (counted, never the line's frames).
    tap_queue: int = Field(4, ge=1, le=1000)
    recent_alarms: int = Field(50, ge=1, le=10_000)  # alarms the page keeps (frame, map, score)
    # Where the console binds its tap input and where the infer stage binds its teaching channel; None: ipc in the
    # run folder. ipc only, whatever pipeline.transport: both ends run on this machine, and a tcp port would let any
    # local user teach the model (the folder of an ipc socket is the access check).
    tap_endpoint: str | None = Field(None, pattern=r"^ipc://\S+$")
    control_endpoint: str | None = Field(None, pattern=r"^ipc://\S+$")
    # Bound on the patches teaching may add to a memory bank (all teachings of the artefact together).
    max_taught_patches: int = Field(5000, ge=1)
    # The infer stage's answer to a teaching request: a grown bank not ready by then is dropped, nothing taught.
    teach_timeout_s: float = Field(5.0, gt=0.0)
    drift: DriftSettings = Field(default_factory=DriftSettings)
