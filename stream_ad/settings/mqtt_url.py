"""mqtt://host[:port] (mqtts:// for TLS), checked when the settings load. Credentials never sit in the URL: the user
is `username`, the password is read from `password_file` or `password_env` (stream_ad.settings.plc_security)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"an MQTT broker URL starts with mqtt:// or mqtts://, not {url.split('://')[0]!r}://")
    if "@" in url:  # said without repeating the URL: it may hold a password
        raise ValueError("the MQTT broker URL carries a user name or password; remove them from the URL and set "
                         "`username` and `password_file` (or `password_env`) on the sink instead")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port of the MQTT broker URL is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the MQTT broker URL has no host (mqtt://HOST[:PORT])")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the MQTT broker URL takes no path or query; topics are set by topic_prefix and node")
    return MqttUrl(parts.hostname, port or (8883 if parts.scheme == "mqtts" else 1883), parts.scheme == "mqtts")
