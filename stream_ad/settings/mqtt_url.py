"""mqtt://[user[:password]@]host[:port] (mqtts:// for TLS), checked when the settings load."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    def __str__(self) -> str:  # for logs: never the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"an MQTT broker URL starts with mqtt:// or mqtts://, not {url.split('://')[0]!r}://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port of the MQTT broker URL is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the MQTT broker URL has no host (mqtt://HOST[:PORT])")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the MQTT broker URL takes no path or query; topics are set by topic_prefix and node")
    return MqttUrl(parts.hostname, port or (8883 if parts.scheme == "mqtts" else 1883), parts.scheme == "mqtts",
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)
