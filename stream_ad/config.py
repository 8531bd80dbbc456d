"""One typed settings model: defaults < pipeline YAML < STREAM_AD_* environment variables.

The defaults are the embedded demo (PatchCore on ../shared's magnetic_tile), so `Settings()` runs anywhere the
shared folder sits beside the checkout. Unknown or invalid keys fail with the dotted key and the file they came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "STREAM_AD_"
ENV_NESTED = "__"
SHARED_TOKEN = "${shared_dir}"


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message names the key and where it came from."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackboneSettings(Strict):
    name: str = "mobilenet_v2"
    # A torchvision weights enum member (e.g. IMAGENET1K_V1, DEFAULT) looked up in the torch hub cache, or "random"
    # (speed measurements only). Ignored when weights_path is set.
    weights: str = "DEFAULT"
    weights_path: Path | None = Path(f"{SHARED_TOKEN}/weights/mobilenet_v2_imagenet_tflite.pth")
    # Mid-level taps by torchvision node name: MobileNetV2's stride-8 and stride-16 stage outputs.
    layers: list[str] = Field(default_factory=lambda: ["features.6", "features.13"], min_length=1)
    # Input normalisation of these weights. None takes the torchvision weights enum's; a weights file must state it.
    mean: tuple[float, float, float] | None = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] | None = (0.5, 0.5, 0.5)

    @model_validator(mode="after")
    def _normalisation_is_known(self) -> BackboneSettings:
        if (self.mean is None) != (self.std is None):
            raise ValueError("backbone.mean and backbone.std must be given together")
        if self.weights_path is not None and self.mean is None:
            raise ValueError(
                "backbone.weights_path is set, so backbone.mean and backbone.std must be set too: "
                "a weights file does not say how its inputs were normalised"
            )
        return self


class PreprocessSettings(Strict):
    """How a camera frame becomes the backbone's input. See the README for when to pick which mode."""

    # resize: stretch to image_size x image_size. letterbox: keep the aspect ratio, pad to a square.
    # tile: keep native resolution, score overlapping tile_size tiles and stitch their maps.
    mode: Literal["resize", "letterbox", "tile"] = "resize"
    image_size: int = Field(224, ge=32, le=4096)
    tile_size: int = Field(224, ge=32, le=4096)
    tile_overlap: float = Field(0.25, ge=0.0, lt=1.0)
    # Grey level of the letterbox padding (and of tile padding at frame edges).
    pad_value: int = Field(0, ge=0, le=255)


class ScorerSettings(Strict):
    method: str = "patchcore"
    # The method's own settings; validated by the method's settings model (see stream_ad.scorers).
    params: Any = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        from stream_ad.scorers import scorer_class

        scorer_class(method)  # raises ValueError listing the registered methods
        return method

    @model_validator(mode="after")
    def _validate_params(self) -> ScorerSettings:
        from stream_ad.scorers import scorer_class

        params = self.params.model_dump() if isinstance(self.params, BaseModel) else self.params
        if not isinstance(params, dict):
            raise ValueError("scorer.params must be a mapping")
        try:
            parsed = scorer_class(self.method).Params.model_validate(params)
        except ValidationError as exc:
            raise ValueError(_format_errors(exc, f"scorer.params of method {self.method!r}", prefix="params.")) from None
        object.__setattr__(self, "params", parsed)
        return self


class DataSettings(Strict):
    # An MVTec-AD-layout category folder: train/good, test/<type>, ground_truth/<type> (optional).
    root: Path = Path(f"{SHARED_TOKEN}/datasets/magnetic_tile")


class RuntimeSettings(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(16, ge=1, le=1024)
    # Torch intra-op threads; None keeps torch's default (one per core).
    threads: int | None = Field(None, ge=1)
    seed: int = 0
    # Per-epoch checkpoints of methods that train networks, so an interrupted fit resumes; None: OUTPUT_DIR/checkpoints.
    checkpoint_dir: Path | None = None
    # How the backbone runs (docs/pipeline.md, "Accelerated inference"): auto takes the best available on the device
    # and logs which and why; naming a path that cannot run here is an error saying what to install.
    accelerate: Literal["auto", "tensorrt", "torch_compile", "openvino", "eager"] = "auto"
    # auto: fp16 for tensorrt, fp32 elsewhere; fp16 and int8 (calibrated on good images) are TensorRT's only.
    precision: Literal["auto", "fp32", "fp16", "int8"] = "auto"
    # Converted models and engines, reused across restarts; None: OUTPUT_DIR/cache.
    cache_dir: Path | None = None


class CalibrationSettings(Strict):
    """How the decision threshold is set from good images the model never saw (stream-ad calibrate)."""

    # Share of train/good held out of fitting (a seeded, deterministic split recorded in the artefact) for
    # calibration. 0 fits on everything; calibrate then needs --images of other good parts.
    holdout_fraction: float = Field(0.25, ge=0.0, lt=1.0)
    seed: int = 0
    # The false-alarm rate asked for: the threshold is set so that, at `confidence`, the true rate is at most this
    # (exact one-sided Clopper-Pearson bound). Fewer good images than that needs is an error naming how many.
    target_fpr: float = Field(0.02, gt=0.0, lt=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    # Also set a pixel threshold for the anomaly map: this share of good pixels above it (None: no pixel threshold).
    pixel_target_fpr: float | None = Field(None, gt=0.0, lt=1.0)
    # Report the max-F1 threshold and the recall at the chosen threshold on data.root/test/<defect> when present.
    defects: bool = True


DropPolicy = Literal["drop_oldest", "drop_newest", "block"]


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
    # Extra time per batch, for rehearsing a slower scorer (back-pressure drills); 0 in production.
    delay_ms: float = Field(0.0, ge=0.0)


class DecideStageSettings(StageSettings):
    queue_size: int = Field(64, ge=1, le=100_000)
    max_batch: int = Field(16, ge=1, le=1024)
    # Used when the model artefact carries no threshold; a score above it is an anomaly.
    threshold: float | None = None


class _SinkBase(Strict):
    only_alarms: bool = False


class JsonlSinkSettings(_SinkBase):
    """One JSON line per verdict."""

    kind: Literal["jsonl"] = "jsonl"
    path: Path | None = None  # None: OUTPUT_DIR/verdicts.jsonl


class StdoutSinkSettings(_SinkBase):
    """One text line per verdict on standard output."""

    kind: Literal["stdout"] = "stdout"


class ImagesSinkSettings(_SinkBase):
    """Anomaly maps of alarmed frames, as PNG overlays."""

    kind: Literal["images"] = "images"
    path: Path | None = None  # None: OUTPUT_DIR/alarms/


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


class ModbusSinkSettings(_PlcSinkBase):
    """Modbus TCP client writing the result block into the PLC's holding registers (docs/pipeline.md)."""

    kind: Literal["modbus"] = "modbus"
    host: str = Field(min_length=1)
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    base_address: int = Field(0, ge=0)  # holding register of offset 0 (0-based protocol address)
    # Wait for the PLC to acknowledge each result (echo its sequence's low word) before the next one.
    handshake: bool = True
    heartbeat_s: float = Field(1.0, gt=0.0)

    @field_validator("base_address")
    @classmethod
    def _block_fits(cls, base: int) -> int:
        from stream_ad.sinks.modbus_map import BLOCK_SIZE

        if base + BLOCK_SIZE > 65536:
            raise ValueError(f"the {BLOCK_SIZE}-register result block must end at or below register 65535; "
                             f"the highest base_address is {65536 - BLOCK_SIZE}")
        return base


class OpcuaSinkSettings(_PlcSinkBase):
    """OPC UA client writing the result object on the PLC's OPC UA server (docs/pipeline.md)."""

    kind: Literal["opcua"] = "opcua"
    endpoint: str = Field(pattern=r"^opc\.tcp://[^/:\s]+(:\d{1,5})?(/\S*)?$")  # opc.tcp://host:4840/path
    namespace: str = Field("urn:stream-ad:verdicts", min_length=1)
    # Browse name of the result object under Objects, in `namespace`.
    object: str = Field("StreamAD", min_length=1)
    heartbeat_s: float = Field(1.0, gt=0.0)


class MqttSinkSettings(_PlcSinkBase):
    """JSON verdicts and alarms to an MQTT broker, with a last will (docs/pipeline.md)."""

    kind: Literal["mqtt"] = "mqtt"
    url: str  # mqtt://[user:password@]host[:1883]
    topic_prefix: str = Field("stream_ad", pattern=r"^[^#+\s]+$")
    node: str = Field("line-pc", pattern=r"^[A-Za-z0-9_.-]+$")  # this pipeline's name in topics and the will
    client_id: str | None = None  # None: stream-ad-NODE-NAME
    qos: Literal[1, 2] = 1  # delivery needs the broker's acknowledgement, so never 0
    keepalive_s: int = Field(10, ge=1, le=65535)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        from stream_ad.sinks.mqtt_url import parse_mqtt_url

        parse_mqtt_url(url)  # raises ValueError saying what is wrong with it
        return url


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


class PipelineSettings(Strict):
    """The streaming pipeline (stream-ad run): stages as processes connected by ZeroMQ."""

    # The model artefact to serve; None: OUTPUT_DIR/CATEGORY-METHOD as `stream-ad fit` writes it.
    model: Path | None = None
    stages: list[str] = Field(default_factory=lambda: ["source", "preprocess", "infer", "decide", "sink"])
    transport: Literal["ipc", "tcp"] = "ipc"
    tcp_base_port: int = Field(5560, ge=1024, le=65000)  # transport tcp: stage i listens on base + i
    # What a full queue does: drop its oldest frame, drop the arriving one, or block (file sources only).
    policy: DropPolicy = "drop_oldest"
    duration_s: float | None = Field(None, gt=0.0)  # stop after this long (None: until the source ends / SIGTERM)
    progress: bool = True  # a live progress line on stderr
    progress_interval_s: float = Field(1.0, gt=0.0)
    source: SourceSettings = Field(default_factory=SourceSettings)
    preprocess: PreprocessStageSettings = Field(default_factory=PreprocessStageSettings)
    infer: InferStageSettings = Field(default_factory=InferStageSettings)
    decide: DecideStageSettings = Field(default_factory=DecideStageSettings)
    sink: SinkStageSettings = Field(default_factory=SinkStageSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)

    @model_validator(mode="after")
    def _check(self) -> PipelineSettings:
        from stream_ad.pipeline.registry import check_stage_names

        check_stage_names(self.stages)  # raises ValueError naming the unknown stage and the known ones
        policies = {self.policy} | {
            getattr(self, name).policy for name in ("preprocess", "infer", "decide", "sink")
        }
        if "block" in policies and self.source.kind not in ("folder", "video"):
            raise ValueError(
                f"policy 'block' is only for offline file sources (folder, video), not source.kind "
                f"{self.source.kind!r}: a live camera must never wait; use drop_oldest or drop_newest"
            )
        if self.source.kind == "rtsp" and not self.source.url:
            raise ValueError("source.kind is 'rtsp' but source.url is not set")
        if self.source.kind == "video" and self.source.path is None:
            raise ValueError("source.kind is 'video' but source.path (the video file) is not set")
        if len(self.source.camera) > 16 and any(o.kind == "modbus" for o in self.sink.outputs):
            raise ValueError(f"source.camera {self.source.camera!r} is longer than the 16 characters that the "
                             f"Modbus result block holds (sink kind modbus)")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED, extra="forbid", validate_assignment=True
    )

    # Where the project's shared data and weights live; "${shared_dir}" in any path setting expands to it.
    shared_dir: Path = Path("../shared")
    data: DataSettings = Field(default_factory=DataSettings)
    backbone: BackboneSettings = Field(default_factory=BackboneSettings)
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    # Where fitted model artefacts and reports go.
    output_dir: Path = Path("runs")
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML arrives as init kwargs; the environment overrides it, as an operator expects.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _expand_shared_dir(self) -> Settings:
        _expand_paths(self, str(self.shared_dir))
        return self


def _expand_paths(model: BaseModel, shared: str) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _expand_paths(value, shared)
        elif isinstance(value, Path) and SHARED_TOKEN in str(value):
            object.__setattr__(model, name, Path(str(value).replace(SHARED_TOKEN, shared)))


def _check_env_keys(environ: dict[str, str]) -> None:
    """pydantic-settings ignores unknown STREAM_AD_* variables; a typo there must not pass silently."""
    for var in environ:
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        model: type[BaseModel] | None = Settings
        for part in var[len(ENV_PREFIX) :].lower().split(ENV_NESTED):
            fields = model.model_fields if model is not None else {}
            if part not in fields:
                raise ConfigError(f"unknown setting in environment variable {var}: no key {part!r}")
            annotation = fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
            else:
                break  # a leaf, or scorer.params whose keys the method's model checks


def _is_union_tag(loc: tuple[int | str, ...], i: int) -> bool:
    """pydantic puts a tagged union member's tag in the error location (outputs.0.modbus.port): not a key."""
    return i > 0 and isinstance(loc[i - 1], int) and loc[i] in {c.model_fields["kind"].default for c in SINK_SETTINGS}


def _format_errors(err: ValidationError, origin: str, prefix: str = "") -> str:
    lines = [f"invalid settings ({origin}):"]
    for e in err.errors():
        loc = [p for i, p in enumerate(e["loc"]) if not _is_union_tag(e["loc"], i)]
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append(e["ctx"]["discriminator"].strip("'"))
        key = prefix + ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML at `path` (or the embedded defaults), then STREAM_AD_* variables, then overrides."""
    data: dict[str, Any] = {}
    origin = "built-in defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"settings file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of settings at the top level")
        data = loaded or {}
    _check_env_keys(dict(os.environ))
    _deep_update(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        env = sorted(v for v in os.environ if v.startswith(ENV_PREFIX))
        if env:
            origin += " with environment " + ", ".join(env)
        raise ConfigError(_format_errors(exc, origin)) from None
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"invalid settings ({origin}): {exc}") from None


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
