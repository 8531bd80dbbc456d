"""OPC UA: the pipeline is a client (asyncua) of the PLC's OPC UA server and writes each verdict into a result
object there, in one Write request (the PLC sees all fields of a result together), Sequence last.

    Objects/{ns}:{object}              the result object, ns = the index of setting `namespace` on the server
        {ns}:Sequence   UInt64     the outbox sequence number; a new value means a new result
        {ns}:FrameId    UInt64
        {ns}:Camera     String
        {ns}:Verdict    String     "ok" | "anomaly" | "unavailable" (inspection not available: the safe state)
        {ns}:Alarm      Boolean    true unless "ok"
        {ns}:Score      Double     NaN when unavailable
        {ns}:Threshold  Double     NaN when unavailable
        {ns}:Timestamp  DateTime   the verdict time (UTC)
        {ns}:CaptureTime DateTime  the frame's capture time (UTC): a PLC rejects a result too late to act on
        {ns}:RunId      String     the `stream-ad run` that judged it
        {ns}:Heartbeat  UInt32     +1 every heartbeat_s

`add_result_object` builds that layout on an asyncua server (a soft PLC, a gateway, the tests). With setting
`security` the channel is Basic256Sha256 (Sign or SignAndEncrypt) to the given server certificate, with an optional
user token; without it, anonymous and unencrypted (a closed cell network only).
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncua import Node, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.crypto.uacrypto import CertProperties
from asyncua.sync import Client
from cryptography import x509

from stream_ad.settings import OpcuaSecuritySettings, OpcuaSinkSettings
from stream_ad.sinks.base import register_sink
from stream_ad.sinks.credentials import password, readable
from stream_ad.sinks.plc import OutboxSink, SinkConfigError

# Browse name -> variant type, in the order of one result write (Sequence last: a PLC triggers on it).
FIELDS: dict[str, ua.VariantType] = {
    "FrameId": ua.VariantType.UInt64,
    "Camera": ua.VariantType.String,
    "Verdict": ua.VariantType.String,
    "Alarm": ua.VariantType.Boolean,
    "Score": ua.VariantType.Double,
    "Threshold": ua.VariantType.Double,
    "Timestamp": ua.VariantType.DateTime,
    "CaptureTime": ua.VariantType.DateTime,
    "RunId": ua.VariantType.String,
    "Sequence": ua.VariantType.UInt64,
}
HEARTBEAT = ("Heartbeat", ua.VariantType.UInt32)
POLICIES = {"Basic256Sha256": SecurityPolicyBasic256Sha256}  # setting security.policy -> asyncua's policy
_DEFAULTS = {ua.VariantType.String: "", ua.VariantType.Boolean: False, ua.VariantType.Double: 0.0,
             ua.VariantType.DateTime: datetime(1970, 1, 1, tzinfo=timezone.utc)}


def _double(value: float | None) -> float:
    return math.nan if value is None else float(value)


def field_values(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "FrameId": int(record["frame_id"]), "Camera": str(record["camera"]), "Verdict": record["verdict"],
        "Alarm": record["verdict"] != "ok", "Score": _double(record["score"]),
        "Threshold": _double(record["threshold"]),
        "Timestamp": datetime.fromtimestamp(record["t_verdict"], tz=timezone.utc),
        "CaptureTime": datetime.fromtimestamp(record["t_capture"], tz=timezone.utc),
        "RunId": record.get("run_id", ""),  # "": a record queued in the outbox before run ids were recorded
        "Sequence": int(record["seq"]),
    }


async def add_result_object(objects: Node, ns: int, name: str = "StreamAD") -> dict[str, Node]:
    """The result object with writable variables, on a server (await it in the server's loop)."""
    obj = await objects.add_object(ns, name)
    nodes = {}
    for field, vtype in (*FIELDS.items(), HEARTBEAT):
        nodes[field] = await obj.add_variable(ns, field, ua.Variant(_DEFAULTS.get(vtype, 0), vtype))
        await nodes[field].set_writable()
    return nodes


class _MaskPassword(logging.Filter):
    """asyncua logs every request at DEBUG, the ActivateSession request with the user's password in it (in clear
    where the server's token policy leaves the encryption to the channel): masked before any handler sees it."""

    _PASSWORD = re.compile(r"Password=b(['\"]).*?(?<!\\)\1")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Password=" in message:
            record.msg, record.args = self._PASSWORD.sub("Password=***", message), None
        return True


logging.getLogger("asyncua.client.ua_client.UASocketProtocol").addFilter(_MaskPassword())


def _pem_or_der(path: Path) -> CertProperties:
    """A certificate or key file by its content, whatever its name ends in (asyncua goes by the suffix)."""
    data = path.read_bytes()
    return CertProperties(data, "pem" if data.lstrip().startswith(b"-----BEGIN") else "der")


def application_uri(cert: CertProperties, cert_file: Path) -> str:
    """The URI in the certificate's subject alternative names: the client must announce it as its application URI,
    or the server refuses the certificate."""
    try:
        load = x509.load_pem_x509_certificate if cert.extension == "pem" else x509.load_der_x509_certificate
        names = load(cert.path_or_content).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return str(names.get_values_for_type(x509.UniformResourceIdentifier)[0])
    except (ValueError, IndexError, x509.ExtensionNotFound):
        raise SinkConfigError(f"setting security.cert_file: {cert_file} is not a certificate with an application "
                              "URI (a subject alternative name URI)") from None


def secure(client: Client, cfg: OpcuaSecuritySettings) -> None:
    """Sign (or sign and encrypt) the channel with the client's certificate, trusting only the given server's."""
    cert, key, server = (_pem_or_der(readable(path, f"security.{key}")) for key, path in (
        ("cert_file", cfg.cert_file), ("key_file", cfg.key_file), ("server_cert_file", cfg.server_cert_file)))
    client.application_uri = application_uri(cert, cfg.cert_file)
    try:
        client.set_security(POLICIES[cfg.policy], cert, key, None, server, getattr(ua.MessageSecurityMode, cfg.mode))
    except (ValueError, TypeError) as exc:  # not a certificate or key, an encrypted key, a key of another cert
        raise SinkConfigError(f"cannot load the certificates or key (settings security.cert_file, "
                              f"security.key_file, security.server_cert_file): {exc}") from None


@register_sink("opcua")
class OpcuaSink(OutboxSink):
    cfg: OpcuaSinkSettings
    _client: Client | None = None
    _beats = 0

    @property
    def endpoint(self) -> str:
        return f"OPC UA server {self.cfg.endpoint} (setting endpoint)"

    def connect(self) -> None:
        client = Client(self.cfg.endpoint, timeout=self.cfg.timeout_s)
        self._client = client
        if self.cfg.security is not None:
            secure(client, self.cfg.security)
        secret = password(self.cfg)
        if secret is not None:
            client.set_user(self.cfg.username)
            client.set_password(secret.get_secret_value())
        try:
            client.connect()
        except ua.UaError as exc:  # retried: the server's endpoints, trust list or users may be fixed while we wait
            raise ConnectionError(f"the server refused the session: {exc} (settings security, username, "
                                  "password_file / password_env)") from None
        except TimeoutError:  # a server that cannot decrypt the request (another key) does not answer at all
            hint = " (is security.server_cert_file this server's certificate?)" if self.cfg.security else ""
            raise TimeoutError(f"no answer within {self.cfg.timeout_s} s{hint}") from None
        try:
            ns = client.get_namespace_index(self.cfg.namespace)
        except ValueError:
            raise SinkConfigError(f"the server has no namespace {self.cfg.namespace!r} (setting namespace)") from None
        path = [f"{ns}:{self.cfg.object}"]
        self._nodes = {}
        for field in (*FIELDS, HEARTBEAT[0]):
            try:
                self._nodes[field] = client.nodes.objects.get_child([*path, f"{ns}:{field}"])
            except ua.UaStatusCodeError:
                raise SinkConfigError(
                    f"no node Objects/{ns}:{self.cfg.object}/{ns}:{field} (settings namespace, object); "
                    f"see docs/pipeline.md for the layout") from None

    def send(self, record: dict[str, Any]) -> None:
        assert self._client is not None
        values = field_values(record)
        self._client.write_values([self._nodes[f] for f in FIELDS],
                                  [ua.DataValue(ua.Variant(values[f], vt)) for f, vt in FIELDS.items()])

    def heartbeat(self) -> None:
        assert self._client is not None
        self._beats = (self._beats + 1) & 0xFFFFFFFF
        self._client.write_values([self._nodes[HEARTBEAT[0]]], [ua.DataValue(ua.Variant(self._beats, HEARTBEAT[1]))])

    def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001, S110 - the connection is being dropped anyway
                client.tloop.stop()
