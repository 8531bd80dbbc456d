"""MQTT: verdicts as JSON to a broker (paho-mqtt), acknowledged by the broker (QoS 1 PUBACK / QoS 2 PUBCOMP), with a
retained online/offline status and a last will that marks the node offline when it dies.

    {prefix}/{node}/status            retained {"state": "online"|"offline", "t": ...}; the will says "offline"
    {prefix}/{node}/{camera}/alarm    anomaly verdicts, and "unavailable" (inspection not available: the safe state)
    {prefix}/{node}/{camera}/verdict  ok verdicts (only_alarms: false)
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from stream_ad.settings import MqttSinkSettings, MqttTlsSettings
from stream_ad.settings.mqtt_url import parse_mqtt_url
from stream_ad.sinks.base import register_sink
from stream_ad.sinks.credentials import password, readable
from stream_ad.sinks.plc import OutboxSink, SinkConfigError

# CONNACK reason codes (MQTT 5 numbering; paho maps 3.1.1's 4 and 5 onto them): bad user name or password, not
# authorized.
REFUSED_CREDENTIALS = frozenset({134, 135})


def status_payload(state: str) -> str:
    return json.dumps({"state": state, "t": round(time.time(), 3)})


@register_sink("mqtt")
class MqttSink(OutboxSink):
    cfg: MqttSinkSettings
    _client: mqtt.Client | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = parse_mqtt_url(self.cfg.url)
        self.base = f"{self.cfg.topic_prefix}/{self.cfg.node}"
        self.status_topic = f"{self.base}/status"

    @property
    def endpoint(self) -> str:
        return f"broker {self.url} (setting url)"

    def topic(self, record: dict[str, Any]) -> str:
        return f"{self.base}/{record['camera']}/{'verdict' if record['verdict'] == 'ok' else 'alarm'}"

    def connect(self) -> None:
        # A fresh client per connection (clean session): paho's own resend queue would duplicate the outbox's.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=self.cfg.client_id or f"stream-ad-{self.cfg.node}-{self.cfg.label}",
                             clean_session=True)
        self._client = client
        secret = password(self.cfg)
        if secret is not None:
            client.username_pw_set(self.cfg.username, secret.get_secret_value())
        if self.url.tls:
            self._set_tls(client)
        client.will_set(self.status_topic, status_payload("offline"), qos=1, retain=True)
        answered = threading.Event()
        reason: list[Any] = []
        closed: list[Any] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
            reason.append(reason_code)
            answered.set()

        def on_disconnect(_c: Any, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
            closed.append(reason_code)
            answered.set()

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.connect(self.url.host, self.url.port, keepalive=self.cfg.keepalive_s)  # raises OSError when down
        client.loop_start()
        if not answered.wait(self.cfg.timeout_s):
            raise TimeoutError(f"the broker did not answer CONNECT within {self.cfg.timeout_s} s")
        if not reason:  # TLS 1.3 checks the client certificate after the handshake: a refusal closes the socket
            hint = ("; over TLS: a refused client certificate (settings tls.cert_file, tls.key_file)"
                    if self.url.tls else "")
            raise ConnectionError(f"the broker closed the connection before accepting it ({closed[0]}){hint}")
        if reason[0].is_failure:
            if reason[0].value in REFUSED_CREDENTIALS:  # retried: the broker's user list may be fixed while we wait
                raise ConnectionError(f"the broker refused the credentials: {reason[0]} (settings username, "
                                      "password_file / password_env, tls.cert_file)")
            raise SinkConfigError(f"the broker refused the connection: {reason[0]}")
        self._publish(self.status_topic, status_payload("online"), retain=True)

    def _set_tls(self, client: mqtt.Client) -> None:
        tls = self.cfg.tls or MqttTlsSettings()
        files = {key: readable(path, f"tls.{key}") if path is not None else None
                 for key, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file))}
        try:
            client.tls_set(ca_certs=files["ca_file"], certfile=files["cert_file"], keyfile=files["key_file"])
        except (ssl.SSLError, ValueError) as exc:  # a file that is not a certificate, a key that does not match
            raise SinkConfigError(f"cannot load the TLS files (settings tls.ca_file, tls.cert_file, tls.key_file): "
                                  f"{exc}") from None

    def _publish(self, topic: str, payload: str, retain: bool = False) -> None:
        assert self._client is not None
        info = self._client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(self.cfg.timeout_s)
        if not info.is_published():
            raise TimeoutError(f"the broker did not acknowledge {topic} within {self.cfg.timeout_s} s")

    def send(self, record: dict[str, Any]) -> None:
        self._publish(self.topic(record), json.dumps(record, separators=(",", ":")))

    def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected():
            try:  # a clean stop says so itself: the will is for dying without a word
                client.publish(self.status_topic, status_payload("offline"), qos=self.cfg.qos,
                               retain=True).wait_for_publish(self.cfg.timeout_s)
            except (RuntimeError, ValueError, OSError):
                pass  # going down anyway; the broker then sends the will
            client.disconnect()
        client.loop_stop()
