"""The streaming pipeline's sections: the camera, the stages' queues and batching, the sinks, metrics, supervision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ByteSize, Field, field_validator, model_validator

from stream_ad.settings.base import Strict
from stream_ad.settings.console import ConsoleSettings
from stream_ad.settings.mqtt_url import parse_mqtt_url
from stream_ad.settings.plc_security import (
    Credentials,
    MqttTlsSettings,
    OpcuaSecuritySettings,
)

# The stages of the built-in chain, in order; a custom middle stage is named by its Stage class, "package.module:Class".
BUILTIN_STAGES = ("source", "preprocess", "infer", "decide", "sink")
# Holding registers of the Modbus result block (its layout: stream_ad.sinks.modbus_map).
MODBUS_BLOCK_SIZE = 28
# Pixels an image file may have, checked from its header before decoding (a decompression bomb is refused unread).
MAX_IMAGE_PIXELS = 64_000_000


DropPolicy = Literal["drop_oldest", "drop_newest", "block"]


def check_stage_names(stages: list[str]) -> None:
    if len(stages) < 2 or stages[0] != "source" or stages[-1] != "sink":
        raise ValueError(f"pipeline.stages must start with 'source' and end with 'sink', got {stages}")
    if len(set(stages)) != len(stages):
        raise ValueError(f"pipeline.stages names a stage twice: {stages}")
    for name in stages:
        if name not in BUILTIN_STAGES and ":" not in name:
            raise ValueError(
                f"unknown stage {name!r} in pipeline.stages; known: {', '.join(BUILTIN_STAGES)}, "
                "or a custom stage class as 'package.module:Class'"
            )
    if "infer" in stages and "decide" in stages and stages.index("decide") < stages.index("infer"):
        raise ValueError("pipeline.stages: 'decide' needs the scores of 'infer' and must come after it")


class GigeSettings(Strict):
    """A GigE Vision camera through aravis (pipeline.source.gige). A setting the camera lacks is an error."""

    # Aravis camera id: "Vendor-Model-Serial", "Aravis-Fake-GV01", or the camera's IP address; None: the first found.
    camera: str | None = None
    exposure_us: float | None = Field(None, gt=0.0)  # None: as the camera is set
    frame_rate: float | None = Field(None, gt=0.0)  # the camera's AcquisitionFrameRate; None: as the camera is set
    pixel_format: str | None = None  # GenICam name (Mono8, RGB8Packed, BayerRG8, ...); None: as the camera is set
    # Pushed buffers; the source always takes the newest and recycles older ones (GenICam NewestOnly).
    buffers: int = Field(3, ge=2, le=64)


class SourceSettings(Strict):
    """The camera: where frames come from and at what rate (pipeline.source)."""

    # folder: images (sorted, recursive); video: a video file; rtsp: an IP camera (PyAV); gige: GigE Vision (aravis).
    kind: Literal["folder", "video", "rtsp", "gige"] = "folder"
    camera: str = Field("cam0", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    # Folder or video file; None streams data.root/test (the demo's test images).
    path: Path | None = None
    url: str | None = None  # rtsp://...
    # Frames per second a folder or video source plays at (a simulated camera); None: a video's own rate, a folder
    # as fast as the pipeline takes them. An RTSP camera sets its own rate.
    fps: float | None = Field(10.0, gt=0.0, le=10000.0)
    loop: bool = False  # folder/video: start over at the end instead of ending the run
    max_frames: int | None = Field(None, ge=1)  # end the source after this many frames
    preload: bool = False  # folder: decode every image once at start (so a fast camera is not slowed by decoding)
    # Largest image or video frame (width x height, from the file's header) decoded; a larger one is a decode_error.
    # fit, eval, calibrate and predict read image files under the same limit.
    max_image_pixels: int = Field(MAX_IMAGE_PIXELS, ge=1)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    gige: GigeSettings = Field(default_factory=GigeSettings)
    open_timeout_s: float = Field(5.0, gt=0.0)
    read_timeout_s: float = Field(2.0, gt=0.0)
    # The camera counts as stale (metric + log) when no frame arrived for this long.
    stale_after_s: float = Field(2.0, gt=0.0)
    reconnect_initial_s: float = Field(0.5, gt=0.0)  # first wait before reconnecting; doubles up to the max
    reconnect_max_s: float = Field(10.0, gt=0.0)
    # Where the source stage sends to when the next stage sits on another host (default: that stage's endpoint).
    connect: str | None = None
    # The model artefact this camera's frames are judged by (threshold included); None: pipeline.model. Cameras of
    # the same artefact share one model process and are batched together.
    model: Path | None = None


class StageSettings(Strict):
    """A stage's input: the bounded queue in front of it and where it listens."""

    # What this stage binds its input to: ipc://PATH or tcp://HOST:PORT; None: an ipc socket in the run folder
    # (or tcp://127.0.0.1 when pipeline.transport is tcp).
    endpoint: str | None = None
    # What the stage before it connects to, when that differs from endpoint (another host); default endpoint.
    connect: str | None = None
    queue_size: int = Field(8, ge=1, le=100_000)
    policy: DropPolicy | None = None  # None: pipeline.policy
    max_batch: int = Field(1, ge=1, le=1024)
    max_wait_ms: float = Field(0.0, ge=0.0, le=60_000.0)


class PreprocessStageSettings(StageSettings):
    threads: int = Field(1, ge=1)  # torch threads for resizing/normalising


class InferStageSettings(StageSettings):
    queue_size: int = Field(16, ge=1, le=100_000)
    # Dynamic batching: up to max_batch frames, or what has arrived max_wait_ms after the oldest, whichever first.
    max_batch: int = Field(8, ge=1, le=1024)
    # A lone camera gains nothing from waiting (frames queue up by themselves while a batch runs): keep it short.
    max_wait_ms: float = Field(2.0, ge=0.0, le=60_000.0)
    threads: int | None = Field(None, ge=1)  # torch threads; None: runtime.threads, else all cores but one
    # OpenVINO requests scoring a batch side by side (at least a thread each); None: 1 for a model one camera uses,
    # else one per camera up to the cores (stream_ad.pipeline.stages.infer.default_infer_streams).
    streams: int | None = Field(None, ge=1, le=64)
    # Extra time per batch, for rehearsing a slower scorer (back-pressure drills); 0 in production.
    delay_ms: float = Field(0.0, ge=0.0)


class DecideStageSettings(StageSettings):
    queue_size: int = Field(64, ge=1, le=100_000)
    max_batch: int = Field(16, ge=1, le=1024)
    # Used when the model artefact carries no threshold; a score above it is an anomaly. Finite (NaN decides nothing).
    threshold: float | None = Field(None, allow_inf_nan=False)


class _SinkBase(Strict):
    only_alarms: bool = False

    def written_paths(self, output_dir: Path) -> dict[str, Path]:
        """What this sink writes, by its key under the sink's settings (defaults resolved under output_dir)."""
        return {}


class JsonlSinkSettings(_SinkBase):
    """One JSON line per verdict."""

    kind: Literal["jsonl"] = "jsonl"
    path: Path | None = None  # None: OUTPUT_DIR/verdicts.jsonl

    def file(self, output_dir: Path) -> Path:
        return self.path or output_dir / "verdicts.jsonl"

    def written_paths(self, output_dir: Path) -> dict[str, Path]:
        return {"path": self.file(output_dir)}


class StdoutSinkSettings(_SinkBase):
    """One text line per verdict on standard output."""

    kind: Literal["stdout"] = "stdout"


class ImagesSinkSettings(_SinkBase):
    """The alarm store: per alarm the raw frame, a readable overlay and a JSON sidecar (docs/pipeline.md, "Sinks").
    Bounded by count, bytes and age: past any bound the oldest alarms go, all their files together."""

    kind: Literal["images"] = "images"
    path: Path | None = None  # None: OUTPUT_DIR/alarms/
    max_alarms: int = Field(10_000, ge=1)
    max_bytes: ByteSize = Field(ByteSize(5 * 10**9), ge=1)  # a number of bytes or "500MB", "2GiB"
    max_age_days: float = Field(30.0, gt=0.0)

    def folder(self, output_dir: Path) -> Path:
        return self.path or output_dir / "alarms"

    def written_paths(self, output_dir: Path) -> dict[str, Path]:
        return {"path": self.folder(output_dir)}


class OutboxSettings(Strict):
    """The on-disk queue in front of a PLC sink (docs/pipeline.md, "The outbox")."""

    path: Path | None = None  # SQLite file; None: OUTPUT_DIR/outbox/NAME.sqlite
    # Bound on undelivered verdicts; beyond it the oldest ok verdict (else the oldest alarm) goes, counted + logged.
    max_pending: int = Field(10_000, ge=1, le=10_000_000)
    retry_initial_s: float = Field(0.2, gt=0.0)  # first wait after a failed delivery; doubles up to retry_max_s
    retry_max_s: float = Field(10.0, gt=0.0)
    # On stop: time to deliver what is pending; the rest stays on disk for the next start.
    drain_timeout_s: float = Field(2.0, ge=0.0)


class _PlcSinkBase(Strict):
    # Names the sink in metrics (label sink), logs and the outbox file; None: the kind.
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    # Alarms always go through the outbox; ok verdicts too unless only_alarms.
    only_alarms: bool = True
    timeout_s: float = Field(2.0, gt=0.0)  # bound on connecting and on each request
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

    @property
    def label(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]

    def outbox_file(self, output_dir: Path) -> Path:
        return self.outbox.path or output_dir / "outbox" / f"{self.label}.sqlite"

    def written_paths(self, output_dir: Path) -> dict[str, Path]:
        return {"outbox.path": self.outbox_file(output_dir)}


class ModbusSinkSettings(_PlcSinkBase):
    """Modbus TCP client writing the result block into the PLC's holding registers (docs/pipeline.md)."""

    kind: Literal["modbus"] = "modbus"
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    # Holding register of offset 0, as a 0-based protocol address (holding register 40001 is address 0).
    base_address: int = Field(0, ge=0)
    # Wait for the PLC to acknowledge each result (echo its sequence's low word) before the next one.
    handshake: bool = True
    heartbeat_s: float = Field(1.0, gt=0.0)

    @field_validator("base_address")
    @classmethod
    def _block_fits(cls, base: int) -> int:
        if base + MODBUS_BLOCK_SIZE > 65536:
            raise ValueError(f"the {MODBUS_BLOCK_SIZE}-register result block must end at or below register 65535; "
                             f"the highest base_address is {65536 - MODBUS_BLOCK_SIZE}")
        return base


class OpcuaSinkSettings(Credentials, _PlcSinkBase):
    """OPC UA client writing the result object on the PLC's OPC UA server (docs/pipeline.md). Without `security`
    and a user it connects anonymously and unencrypted: for a closed cell network only."""

    kind: Literal["opcua"] = "opcua"
    endpoint: str = Field(pattern=r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$")  # opc.tcp://host:4840/path
    namespace: str = Field("urn:stream-ad:verdicts", min_length=1)
    # Browse name of the result object under Objects, in `namespace`.
    object: str = Field("StreamAD", min_length=1)
    heartbeat_s: float = Field(1.0, gt=0.0)
    security: OpcuaSecuritySettings | None = None  # None: no security policy (SecurityPolicy#None)

    @model_validator(mode="after")
    def _password_only_encrypted(self) -> OpcuaSinkSettings:
        if self.username is not None and (self.security is None or self.security.mode != "SignAndEncrypt"):
            # A server whose token policy leaves the password to the channel would get it in clear.
            raise ValueError("a user name and password need security.mode SignAndEncrypt (else the password may "
                             "cross the network in clear)")
        return self


class MqttSinkSettings(Credentials, _PlcSinkBase):
    """JSON verdicts and alarms to an MQTT broker, with a last will (docs/pipeline.md)."""

    kind: Literal["mqtt"] = "mqtt"
    url: str  # mqtt://host[:1883] or mqtts://host[:8883]; no credentials (username, password_file / password_env)
    tls: MqttTlsSettings | None = None  # mqtts:// only; None: the system's CAs, no client certificate
    topic_prefix: str = Field("stream_ad", pattern=r"^[^#+\s]+$")
    node: str = Field("line-pc", pattern=r"^[A-Za-z0-9_.-]+$")  # this pipeline's name in topics and the will
    client_id: str | None = None  # None: stream-ad-NODE-NAME
    qos: Literal[1, 2] = 1  # delivery needs the broker's acknowledgement, so never 0
    keepalive_s: int = Field(10, ge=1, le=65535)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        parse_mqtt_url(url)  # raises ValueError saying what is wrong with it
        return url

    @model_validator(mode="after")
    def _secrets_only_over_tls(self) -> MqttSinkSettings:
        tls = parse_mqtt_url(self.url).tls
        if self.tls is not None and not tls:
            raise ValueError("`tls` is set but url starts with mqtt://; use mqtts://")
        if self.username is not None and not tls:
            raise ValueError("a password would cross the network in clear over mqtt://; use mqtts://")
        return self


SINK_SETTINGS = (JsonlSinkSettings, StdoutSinkSettings, ImagesSinkSettings, ModbusSinkSettings, OpcuaSinkSettings,
                 MqttSinkSettings)
# One settings class per sink kind, picked by `kind`: each kind's keys are checked as that kind's.
SinkSettings = Annotated[
    JsonlSinkSettings | StdoutSinkSettings | ImagesSinkSettings | ModbusSinkSettings | OpcuaSinkSettings
    | MqttSinkSettings,
    Field(discriminator="kind"),
]


class SinkStageSettings(StageSettings):
    queue_size: int = Field(256, ge=1, le=100_000)
    max_batch: int = Field(32, ge=1, le=1024)
    outputs: list[SinkSettings] = Field(default_factory=lambda: [JsonlSinkSettings()])
    # A verdict some sink did not durably take (a full disk, a failed outbox) is always dropped as sink_error, never
    # counted as scored. Then: count (only that), safe_state (also tell the PLC sinks "inspection not available",
    # verdict "unavailable", until verdicts flow again) or stop (the run exits non-zero; systemd restarts it).
    on_error: Literal["count", "safe_state", "stop"] = "safe_state"

    @field_validator("outputs")
    @classmethod
    def _unique_plc_names(cls, outputs: list[Any]) -> list[Any]:
        labels = [o.label for o in outputs if isinstance(o, _PlcSinkBase)]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ValueError(f"PLC sinks need distinct names (metrics label, outbox file); set `name` on: {twice}")
        return outputs


class MetricsSettings(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)  # 0: any free port (printed at start)


class SupervisorSettings(Strict):
    endpoint: str | None = None  # where stages report to the supervisor; None: ipc in the run folder
    startup_timeout_s: float = Field(180.0, gt=0.0)
    restart_backoff_s: float = Field(0.5, gt=0.0)
    restart_backoff_max_s: float = Field(10.0, gt=0.0)
    # On SIGTERM (or the end of a file source): time for in-flight frames to reach a verdict, then for stages to exit.
    drain_timeout_s: float = Field(10.0, gt=0.0)
    stop_timeout_s: float = Field(5.0, gt=0.0)
    # A frame still in flight this long after the last sign of progress past it counts as lost (safety net).
    lost_after_s: float = Field(30.0, gt=0.0)
    # A ready stage whose worker sent no heartbeat for this long (stuck in its stage code, stopped, frozen) is killed
    # and restarted; its frames count as stage_hung. Keep it above the slowest batch the infer stage takes. A stage
    # still starting (loading, warming up its model) has startup_timeout_s instead.
    hung_after_s: float = Field(5.0, ge=0.5)


class CalibrationCheckSettings(Strict):
    """At start-up, the scores of the first frames against the good scores the threshold was calibrated on
    (stream_ad.calibration.shift): a camera that delivers other images than the calibration's (compression,
    scaling, colour) breaks the false-alarm bound. One warning and the gauge stream_ad_calibration_mismatch."""

    enabled: bool = True
    frames: int = Field(50, ge=5, le=100_000)  # the first this many scored frames are compared
    # The test's p-value below which the distributions count as different (low: one false warning in a thousand
    # starts on an unchanged camera, a few in a hundred with a fifth of the first frames defective).
    significance: float = Field(0.001, gt=0.0, lt=1.0)


class PipelineSettings(Strict):
    """The streaming pipeline (stream-ad run): stages as processes connected by ZeroMQ."""

    # The model artefact to serve; None: OUTPUT_DIR/CATEGORY-METHOD as `stream-ad fit` writes it.
    model: Path | None = None
    stages: list[str] = Field(default_factory=lambda: ["source", "preprocess", "infer", "decide", "sink"])
    transport: Literal["ipc", "tcp"] = "ipc"
    tcp_base_port: int = Field(5560, ge=1024, le=65000)  # transport tcp: stage i listens on base + i
    # The ZeroMQ CURVE keys of every tcp socket (a folder made by `stream-ad keys DIR`); needed by any tcp endpoint.
    keys_dir: Path | None = None
    # tcp without keys: any local user can then forge verdicts and stop the run. A closed test bench only.
    insecure_tcp: bool = False
    # What a full queue does: drop its oldest frame, drop the arriving one, or block (file sources only).
    policy: DropPolicy = "drop_oldest"
    duration_s: float | None = Field(None, gt=0.0)  # stop after this long (None: until the source ends / SIGTERM)
    # A frame older than this (capture to the decide stage) is dropped as stale, never judged: a verdict that late
    # is of no use to the line. None: no limit.
    max_frame_age_ms: float | None = Field(None, gt=0.0)
    progress: bool = True  # a live progress line on stderr
    progress_interval_s: float = Field(1.0, gt=0.0)
    source: SourceSettings = Field(default_factory=SourceSettings)
    # Many cameras on one line PC: each entry a source section of its own (kind, rate, stale timeout, model), each
    # camera read by its own process. Empty: the one camera of pipeline.source.
    cameras: list[SourceSettings] = Field(default_factory=list)
    preprocess: PreprocessStageSettings = Field(default_factory=PreprocessStageSettings)
    infer: InferStageSettings = Field(default_factory=InferStageSettings)
    decide: DecideStageSettings = Field(default_factory=DecideStageSettings)
    sink: SinkStageSettings = Field(default_factory=SinkStageSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)
    calibration_check: CalibrationCheckSettings = Field(default_factory=CalibrationCheckSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @model_validator(mode="after")
    def _check(self) -> PipelineSettings:
        check_stage_names(self.stages)  # raises ValueError naming the unknown stage and the known ones
        if self.cameras and self.source != SourceSettings():
            raise ValueError("set pipeline.cameras (many cameras) or pipeline.source (one), not both")
        names = [cam.camera for cam in self.cameras]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"pipeline.cameras: each camera needs a name of its own (`camera`); twice: {twice}")
        policies = {self.policy} | {
            getattr(self, name).policy for name in ("preprocess", "infer", "decide", "sink")
        }
        modbus = any(o.kind == "modbus" for o in self.sink.outputs)
        for where, cam in self.camera_sections():
            if "block" in policies and cam.kind not in ("folder", "video"):
                raise ValueError(
                    f"policy 'block' is only for offline file sources (folder, video), not {where}.kind "
                    f"{cam.kind!r}: a live camera must never wait; use drop_oldest or drop_newest"
                )
            if cam.kind == "rtsp" and not cam.url:
                raise ValueError(f"{where}.kind is 'rtsp' but {where}.url is not set")
            if cam.kind == "video" and cam.path is None:
                raise ValueError(f"{where}.kind is 'video' but {where}.path (the video file) is not set")
            if len(cam.camera) > 16 and modbus:
                raise ValueError(f"{where}.camera {cam.camera!r} is longer than the 16 characters that the "
                                 f"Modbus result block holds (sink kind modbus)")
        if self.keys_dir is None and not self.insecure_tcp and self.uses_tcp():
            raise ValueError("a tcp transport needs CURVE keys: make them with `stream-ad keys DIR` and set "
                             "pipeline.keys_dir: DIR (or pipeline.insecure_tcp: true, on a closed test bench only)")
        return self

    def camera_sections(self) -> list[tuple[str, SourceSettings]]:
        """Every camera of the pipeline with the setting that configures it ("pipeline.cameras.2" or
        "pipeline.source"), in the order given."""
        if not self.cameras:
            return [("pipeline.source", self.source)]
        return [(f"pipeline.cameras.{i}", cam) for i, cam in enumerate(self.cameras)]

    def uses_tcp(self) -> bool:
        """Whether any stage or the supervisor talks over tcp (the transport, or an endpoint set to tcp://)."""
        stages = (self.preprocess, self.infer, self.decide, self.sink)
        named = [*(cam.connect for _, cam in self.camera_sections()), self.supervisor.endpoint,
                 *(a for s in stages for a in (s.endpoint, s.connect))]
        return self.transport == "tcp" or any(a is not None and a.startswith("tcp://") for a in named)
