"""ZeroMQ CURVE on the pipeline's tcp sockets: only a process that holds the pipeline's client key reaches a stage or
the supervisor.

`stream-ad keys DIR` makes two key pairs with pyzmq's zmq.auth: `server` (every socket that binds: a stage's input,
the supervisor's notices) and `client` (every socket that connects), each file readable by its owner only. A bound
tcp socket is a CURVE server whose ZAP handler (zmq.auth's ThreadAuthenticator) admits the client public key alone;
a connecting one is a CURVE client that knows the server's public key. A peer without CURVE, with other keys or the
wrong server key fails the handshake before any message of it is read: each refused handshake is counted
(stream_ad_rejected_peers_total{stage, reason}: no_curve, unknown_key, wrong_server_key, or handshake_error for a peer
that hung up during it) and logged, one line per LOG_EVERY_S at most. ipc sockets stay as
they are: their run folder is the supervisor's own (0700).
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.throttled_log import ThrottledLog
from stream_ad.settings import PipelineSettings

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger("stream_ad.pipeline.curve")

PAIRS = ("server", "client")
Z85_KEY_LEN = 40  # a 32-byte CURVE key, Z85-encoded as zmq.auth writes it
LOG_EVERY_S = 10.0
POLL_MS = 200
REFUSALS = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH


class Refusal(enum.StrEnum):
    """Why a handshake was refused: the label `reason` of stream_ad_rejected_peers_total."""

    NO_CURVE = "no_curve"
    UNKNOWN_KEY = "unknown_key"  # the right server key, a client key the pipeline did not make
    WRONG_SERVER_KEY = "wrong_server_key"
    HANDSHAKE_ERROR = "handshake_error"  # the peer hung up mid-handshake (a refused one may do so as well)


@dataclass(frozen=True)
class CurveKeys:
    """Both key pairs, Z85-encoded."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes


def key_files(folder: Path) -> list[Path]:
    return [folder / f"{pair}{suffix}" for pair in PAIRS for suffix in (".key", ".key_secret")]


def make_keys(folder: Path) -> list[Path]:
    """New server and client key pairs in `folder` (0700, made if missing), each file 0600. PipelineError when keys
    are there already: new keys must reach every process of a pipeline at once, so old ones go only knowingly."""
    present = [p.name for p in key_files(folder) if p.exists()]
    if present:
        raise PipelineError(f"{folder} already holds keys ({', '.join(present)}); remove them to make new ones")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    umask = os.umask(0o077)  # never readable by others, not even between writing and chmod
    try:
        for pair in PAIRS:
            zmq.auth.create_certificates(folder, pair)
    finally:
        os.umask(umask)
    for path in key_files(folder):
        path.chmod(0o600)
    return key_files(folder)


def _load_pair(folder: Path, pair: str) -> tuple[bytes, bytes]:
    path = folder / f"{pair}.key_secret"
    fix = f"(pipeline.keys_dir; make keys with `stream-ad keys {folder}`)"
    try:
        mode = path.stat().st_mode
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise PipelineError(f"cannot read the CURVE key {path}: {exc.strerror or exc} {fix}") from None
    except ValueError as exc:
        raise PipelineError(f"{path} is not a CURVE key file: {exc} {fix}") from None
    if secret is None or len(secret) != Z85_KEY_LEN or len(public) != Z85_KEY_LEN:
        raise PipelineError(f"{path} holds no CURVE key pair {fix}")
    if mode & 0o077:
        raise PipelineError(f"the CURVE key {path} can be read by other users (mode {mode & 0o777:o}): "
                            f"chmod 600 {path}")
    return public, secret


def load_keys(folder: Path) -> CurveKeys:
    """Both key pairs of `folder`; PipelineError naming the file when one is missing, malformed or readable by
    others."""
    (server_public, server_secret), (client_public, client_secret) = (_load_pair(folder, pair) for pair in PAIRS)
    return CurveKeys(server_public, server_secret, client_public, client_secret)


def pipeline_keys(cfg: PipelineSettings) -> CurveKeys | None:
    """The keys pipeline.keys_dir names (None: none set; the settings allow that only without tcp, or insecure)."""
    return load_keys(cfg.keys_dir) if cfg.keys_dir is not None else None


class _OnlyTheClientKey:
    """The ZAP handler's credentials provider (zmq.auth's callback protocol)."""

    def __init__(self, client_public: bytes) -> None:
        self.client_public = client_public

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self.client_public


def _refusal(event: dict) -> Refusal:
    if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return Refusal.UNKNOWN_KEY
    if event["value"] == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return Refusal.NO_CURVE
    if event["value"] == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return Refusal.WRONG_SERVER_KEY
    return Refusal.HANDSHAKE_ERROR


def secure_client(sock: zmq.Socket, endpoint: str, keys: CurveKeys | None) -> None:
    """Before connect: a CURVE client of the pipeline's server key, when `endpoint` is tcp and there are keys."""
    if keys is None or not endpoint.startswith("tcp://"):
        return
    sock.curve_secretkey = keys.client_secret
    sock.curve_publickey = keys.client_public
    sock.curve_serverkey = keys.server_public


class CurveGuard:
    """One process's CURVE side. Without keys (ipc only, or pipeline.insecure_tcp) every socket stays as it is.
    `rejected`: stream_ad_rejected_peers_total, labels stage and reason."""

    def __init__(self, keys: CurveKeys | None, ctx: zmq.Context, rejected: Counter) -> None:
        self.keys = keys
        self.ctx = ctx
        self.rejected = rejected
        self._auth: ThreadAuthenticator | None = None
        self._watches: list[threading.Thread] = []
        self._stop = threading.Event()

    def client(self, sock: zmq.Socket, endpoint: str) -> None:
        secure_client(sock, endpoint, self.keys)

    def server(self, sock: zmq.Socket, endpoint: str, stage: str) -> None:
        """Before bind: a CURVE server admitting the pipeline's client key only, its refusals counted for `stage`,
        when `endpoint` is tcp."""
        for reason in Refusal:  # every series from the start, at 0: an alert on increase() sees the first one
            self.rejected.labels(stage, reason)
        if self.keys is None or not endpoint.startswith("tcp://"):
            return
        if self._auth is None:  # one ZAP handler per context
            self._auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("stream_ad.pipeline.curve.zap"))
            self._auth.start()
            self._auth.configure_curve_callback("*", _OnlyTheClientKey(self.keys.client_public))
        sock.curve_server = True
        sock.curve_secretkey = self.keys.server_secret
        sock.curve_publickey = self.keys.server_public
        monitor = sock.get_monitor_socket(REFUSALS | zmq.EVENT_MONITOR_STOPPED)
        watch = threading.Thread(target=self._watch, args=(monitor, endpoint, stage), name=f"curve-{stage}",
                                 daemon=True)
        watch.start()
        self._watches.append(watch)

    def _watch(self, monitor: zmq.Socket, endpoint: str, stage: str) -> None:
        lines = ThrottledLog(log, LOG_EVERY_S)
        try:
            while not self._stop.is_set():
                if not monitor.poll(POLL_MS):
                    continue
                event = recv_monitor_message(monitor)
                if event["event"] == zmq.EVENT_MONITOR_STOPPED:  # the socket was closed
                    return
                reason = _refusal(event)
                self.rejected.labels(stage, reason).inc()
                lines.warning("%s: refused a peer on %s (%s): it does not hold the pipeline's CURVE keys",
                              stage, endpoint, reason.value)
        finally:
            monitor.close(linger=0)

    def close(self) -> None:
        """Stop watching and the ZAP handler (before the context ends: they hold sockets of it)."""
        self._stop.set()
        for watch in self._watches:
            watch.join(timeout=2 * POLL_MS / 1000)
        if self._auth is not None:
            self._auth.stop()
