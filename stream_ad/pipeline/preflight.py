"""What can be checked of a pipeline before any process starts: its source, the endpoints its stages bind, their
CURVE keys and the paths it writes. Each check gives findings, good or bad, one line each (`stream-ad check`); a run
stops on a bad source before it loads any model."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stream_ad.errors import located
from stream_ad.pipeline.curve import load_keys
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.plan import plan_wiring
from stream_ad.pipeline.stages.source import source_folder
from stream_ad.settings import Settings, SourceSettings
from stream_ad.settings.redact import hide_passwords
from stream_ad.sources.folder import list_images

# Linux's sockaddr_un.sun_path holds 108 bytes with the terminating NUL: a longer ipc:// path cannot be bound.
IPC_PATH_MAX = 107


@dataclass(frozen=True)
class Finding:
    topic: str  # what was checked: settings, model, source, endpoint, path
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.topic}: {self.detail}"


def check_sources(settings: Settings) -> list[Finding]:
    """Per camera: the folder holds images, the video file exists, the RTSP URL parses (a GigE camera is found only
    at start)."""
    many = len(settings.pipeline.cameras) > 0
    return [_check_source(src, where, settings.data.root, f"camera {src.camera}: " if many else "")
            for where, src in settings.pipeline.camera_sections()]


def _check_source(src: SourceSettings, where: str, data_root: Path, prefix: str) -> Finding:
    if src.kind == "folder":
        folder, setting = source_folder(src, where, data_root)
        try:
            return Finding("source", True, f"{prefix}folder {folder}: {len(list_images(folder, setting))} images")
        except FileNotFoundError as exc:
            return Finding("source", False, f"{prefix}{exc}")
    if src.kind == "video":
        assert src.path is not None  # the settings require it
        if src.path.is_file():
            return Finding("source", True, f"{prefix}video file {src.path}")
        return Finding("source", False, f"{prefix}video file not found: {located(src.path)} (setting {where}.path)")
    if src.kind == "rtsp":
        return _check_rtsp_url(src.url or "", where, prefix)
    return Finding("source", True, f"{prefix}{src.kind} camera {src.gige.camera or '(the first found)'}, found at "
                   "start")


def _check_rtsp_url(url: str, where: str, prefix: str) -> Finding:
    shown = hide_passwords(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        return Finding("source", False, f"{prefix}{where}.url {shown!r} does not parse: {exc}")
    if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
        return Finding("source", False, f"{prefix}{where}.url {shown!r} is not rtsp://HOST[:PORT]/PATH")
    return Finding("source", True, f"{prefix}RTSP camera at {parts.hostname}:{parts.port or 554}")


def check_endpoints(settings: Settings) -> list[Finding]:
    """Every address the run binds (the stages' inputs, the supervisor's notices, /metrics) is free on this host."""
    run_dir = Path(tempfile.gettempdir()) / "stream-ad-RUN"  # each run makes a fresh folder there
    plan = plan_wiring(settings, run_dir)
    binds = [(spec.label, spec.bind) for spec in plan.stages if spec.bind] + [("supervisor", plan.notices)]
    findings = [_check_endpoint(label, address) for label, address in binds]
    metrics = settings.pipeline.metrics
    if metrics.enabled and metrics.port:
        findings.append(_check_tcp("/metrics", metrics.host, metrics.port))
    return findings


def _check_endpoint(label: str, address: str) -> Finding:
    scheme, _, rest = address.partition("://")
    if scheme == "ipc":
        if len(rest) > IPC_PATH_MAX:
            return Finding("endpoint", False, f"{label} {address}: a socket path longer than {IPC_PATH_MAX} bytes")
        return _check_writable("endpoint", f"{label} {address}", Path(rest))
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        if not port.isdigit():
            return Finding("endpoint", False, f"{label} {address}: no port")
        return _check_tcp(label, "0.0.0.0" if host == "*" else host.strip("[]"), int(port))
    return Finding("endpoint", False, f"{label} {address}: not ipc://PATH or tcp://HOST:PORT")


def _check_tcp(label: str, host: str, port: int) -> Finding:
    what = f"{label} tcp {host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Finding("endpoint", False, f"{what}: host does not resolve ({exc})")
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds: TIME_WAIT is no conflict
        try:
            sock.bind(address)
        except OSError as exc:
            reason = "not an address of this host" if exc.errno == errno.EADDRNOTAVAIL else "in use"
            return Finding("endpoint", False, f"{what}: {reason} ({exc.strerror})")
    return Finding("endpoint", True, f"{what} is free")


def check_keys(settings: Settings) -> list[Finding]:
    """The CURVE keys of a tcp pipeline can be read, and by this user only (none without keys_dir)."""
    cfg = settings.pipeline
    if cfg.keys_dir is None:
        insecure = "none: pipeline.insecure_tcp is set, any local user can reach the tcp sockets"
        return [Finding("keys", True, insecure)] if cfg.uses_tcp() else []
    try:
        load_keys(cfg.keys_dir)
    except PipelineError as exc:
        return [Finding("keys", False, str(exc))]
    return [Finding("keys", True, f"CURVE keys in {cfg.keys_dir}, readable by their owner only")]


def check_paths(settings: Settings) -> list[Finding]:
    """Every file and folder the run writes can be written (or created) by this user."""
    return [_check_writable("path", f"{key} {path}", path) for key, path in settings.written_paths().items()]


def _check_writable(topic: str, what: str, path: Path) -> Finding:
    absolute = Path(os.path.abspath(path))
    existing = next(p for p in (absolute, *absolute.parents) if p.exists())
    if existing != absolute and not existing.is_dir():
        return Finding(topic, False, f"{what}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        owner = "it" if existing == absolute else f"{existing}, where it would be created,"
        return Finding(topic, False, f"{what}: {owner} is not writable by this user")
    return Finding(topic, True, f"{what} is writable" + ("" if existing == absolute else f" (created in {existing})"))
