"""One typed settings model: defaults < pipeline YAML < STREAM_AD_* environment variables.

A leaf of the package: it imports nothing else of stream_ad and never torch, so every layer may read settings and
loading them stays cheap. The defaults are the embedded demo (PatchCore on ../shared's magnetic_tile), so
`Settings()` runs anywhere the shared folder sits beside the checkout. Unknown or invalid keys fail with the dotted
key and the file or variable they came from. A method's own params stay a mapping here: the scorer registry
validates them when it builds the scorer.

errors.py    ConfigError and how an error names its key
sections.py  data, backbone, preprocess, scorer, runtime, calibration
pipeline.py  the streaming pipeline: camera, stages, sinks, metrics, supervisor
console.py   the operator's console beside it (pipeline.console): page, teaching, drift watch
mqtt_url.py  the MQTT broker URL, checked as the settings load
plc_security.py  the PLC sinks' TLS / OPC UA security files and credentials (never a password itself)
redact.py    URL passwords masked wherever a settings value is shown
load.py      the root model and load_settings
origins.py   where each effective setting came from (default, the file, a STREAM_AD_* variable)
"""

from stream_ad.settings.console import ConsoleSettings, DriftSettings
from stream_ad.settings.errors import ConfigError, format_errors
from stream_ad.settings.load import (
    ENV_PREFIX,
    Settings,
    load_settings,
    settings_from_record,
)
from stream_ad.settings.pipeline import (
    BUILTIN_STAGES,
    MAX_IMAGE_PIXELS,
    MODBUS_BLOCK_SIZE,
    SINK_SETTINGS,
    CalibrationCheckSettings,
    DecideStageSettings,
    DropPolicy,
    GigeSettings,
    ImagesSinkSettings,
    InferStageSettings,
    JsonlSinkSettings,
    MetricsSettings,
    ModbusSinkSettings,
    MqttSinkSettings,
    OpcuaSinkSettings,
    OutboxSettings,
    PipelineSettings,
    PreprocessStageSettings,
    SinkSettings,
    SinkStageSettings,
    SourceSettings,
    StageSettings,
    StdoutSinkSettings,
    SupervisorSettings,
)
from stream_ad.settings.plc_security import (
    Credentials,
    MqttTlsSettings,
    OpcuaSecuritySettings,
)
from stream_ad.settings.sections import (
    MAP_SCORE_FRACTION,
    BackboneSettings,
    CalibrationSettings,
    DataSettings,
    PreprocessSettings,
    RuntimeSettings,
    ScorerSettings,
)

__all__ = [
    "BUILTIN_STAGES",
    "ENV_PREFIX",
    "MAP_SCORE_FRACTION",
    "MAX_IMAGE_PIXELS",
    "MODBUS_BLOCK_SIZE",
    "SINK_SETTINGS",
    "BackboneSettings",
    "CalibrationCheckSettings",
    "CalibrationSettings",
    "ConfigError",
    "ConsoleSettings",
    "Credentials",
    "DataSettings",
    "DecideStageSettings",
    "DriftSettings",
    "DropPolicy",
    "GigeSettings",
    "ImagesSinkSettings",
    "InferStageSettings",
    "JsonlSinkSettings",
    "MetricsSettings",
    "ModbusSinkSettings",
    "MqttSinkSettings",
    "MqttTlsSettings",
    "OpcuaSecuritySettings",
    "OpcuaSinkSettings",
    "OutboxSettings",
    "PipelineSettings",
    "PreprocessSettings",
    "PreprocessStageSettings",
    "RuntimeSettings",
    "ScorerSettings",
    "Settings",
    "SinkSettings",
    "SinkStageSettings",
    "SourceSettings",
    "StageSettings",
    "StdoutSinkSettings",
    "SupervisorSettings",
    "format_errors",
    "load_settings",
    "settings_from_record",
]
