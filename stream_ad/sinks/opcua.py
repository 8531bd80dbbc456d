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
        {ns}:Heartbeat  UInt32     +1 every heartbeat_s

`add_result_object` builds that layout on an asyncua server (a soft PLC, a gateway, the tests).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from asyncua import Node, ua
from asyncua.sync import Client

from stream_ad.settings import OpcuaSinkSettings
from stream_ad.sinks.base import register_sink
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
    "Sequence": ua.VariantType.UInt64,
}
HEARTBEAT = ("Heartbeat", ua.VariantType.UInt32)
_DEFAULTS = {ua.VariantType.String: "", ua.VariantType.Boolean: False, ua.VariantType.Double: 0.0,
             ua.VariantType.DateTime: datetime(1970, 1, 1, tzinfo=timezone.utc)}


def _double(value: float | None) -> float:
    return math.nan if value is None else float(value)


def field_values(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "FrameId": int(record["frame_id"]), "Camera": str(record["camera"]), "Verdict": record["verdict"],
        "Alarm": record["verdict"] != "ok", "Score": _double(record["score"]),
        "Threshold": _double(record["threshold"]),
        "Timestamp": datetime.fromtimestamp(record["t_verdict"], tz=timezone.utc), "Sequence": int(record["seq"]),
    }


async def add_result_object(objects: Node, ns: int, name: str = "StreamAD") -> dict[str, Node]:
    """The result object with writable variables, on a server (await it in the server's loop)."""
    obj = await objects.add_object(ns, name)
    nodes = {}
    for field, vtype in (*FIELDS.items(), HEARTBEAT):
        nodes[field] = await obj.add_variable(ns, field, ua.Variant(_DEFAULTS.get(vtype, 0), vtype))
        await nodes[field].set_writable()
    return nodes


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
        client.connect()
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
