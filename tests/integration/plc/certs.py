"""Certificates for the secure PLC-server tests, made with asyncua's OPC UA certificate helpers (cryptography): a
CA with a broker and a client certificate for MQTT over mutual TLS, self-signed application certificates for OPC UA.
Each lands as PEM files in a folder, the keys readable by the owner only."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

LOOPBACK = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            x509.DNSName(socket.gethostname())]


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def _write(folder: Path, name: str, cert: x509.Certificate, key: object) -> CertFiles:
    files = CertFiles(folder / f"{name}.pem", folder / f"{name}-key.pem")  # asyncua goes by the suffix
    files.cert.write_bytes(cert.public_bytes(Encoding.PEM))
    files.key.write_bytes(cert_gen.dump_private_key_as_pem(key))  # type: ignore[arg-type]
    files.key.chmod(0o600)
    return files


def tls_set(folder: Path) -> dict[str, CertFiles]:
    """A CA ("ca"), a broker certificate for 127.0.0.1 ("server") and two client certificates ("client", and
    "stranger" from another CA) for mutual TLS."""
    out = {}
    for ca_name, leaves in (("ca", ("server", "client")), ("other_ca", ("stranger",))):
        ca_key = cert_gen.generate_private_key()
        ca = cert_gen.generate_self_signed_app_certificate(ca_key, f"test {ca_name}", {}, [], [])
        out[ca_name] = _write(folder, ca_name, ca, ca_key)
        for leaf in leaves:
            key = cert_gen.generate_private_key()
            use = ExtendedKeyUsageOID.SERVER_AUTH if leaf == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
            csr = cert_gen.generate_app_certificate_signing_request(key, f"test {leaf}", {}, LOOPBACK, [use])
            out[leaf] = _write(folder, leaf, cert_gen.sign_certificate_request(csr, ca, ca_key), key)
    return out


def opcua_app_cert(folder: Path, name: str, uri: str, server: bool) -> CertFiles:
    """A self-signed OPC UA application instance certificate whose URI SAN is `uri`."""
    key = cert_gen.generate_private_key()
    use = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(uri), *LOOPBACK], [use])
    return _write(folder, name, cert, key)
