"""How a PLC sink proves who it is and checks whom it talks to: the MQTT TLS files, the OPC UA security policy and
certificates, and a user whose password is read when the sink connects, from a file or an environment variable.
No setting holds a password, so no settings dump, error message or log line can show one. The files are checked
(exist, readable) when the sink opens; docs/pipeline.md, "Security on the plant network"."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from stream_ad.settings.base import Strict


class Credentials(Strict):
    """A user name and where its password is: one line in a file readable by the service user only, or a variable
    of the service's environment (systemd LoadCredential= / EnvironmentFile=)."""

    username: str | None = Field(None, min_length=1)
    password_file: Path | None = None
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _user_and_one_password(self) -> Credentials:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("set one of password_file and password_env, not both")
        has_password = self.password_file is not None or self.password_env is not None
        if has_password != (self.username is not None):
            raise ValueError("username and a password (password_file or password_env) go together")
        return self


class MqttTlsSettings(Strict):
    """TLS of an mqtts:// broker connection; the broker's host name is checked against its certificate."""

    ca_file: Path | None = None  # PEM of the CA that signed the broker's certificate; None: the system's CAs
    cert_file: Path | None = None  # this client's certificate (mutual TLS), with key_file
    key_file: Path | None = None

    @model_validator(mode="after")
    def _cert_with_key(self) -> MqttTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (the client certificate and its private key)")
        return self


class OpcuaSecuritySettings(Strict):
    """A signed (Sign) or signed and encrypted (SignAndEncrypt) secure channel. The server's certificate is given,
    not fetched: a server that cannot prove it holds that certificate's key is refused."""

    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    # This client's application instance certificate (PEM or DER; its URI SAN is the client's application URI, so
    # the server's trust list checks it) and its private key (PEM or DER, not encrypted).
    cert_file: Path
    key_file: Path
    server_cert_file: Path  # the PLC's certificate, as exported from its OPC UA configuration
