"""An OPC UA server on 127.0.0.1 as the PLC for the tests (asyncua): it holds stream_ad's result object and logs
each result write (a Write request that sets Sequence) as a JSON line, from the request itself.

    python opcua_plc.py PORT RESULTS.jsonl [--namespace URI]
        [--cert FILE --key FILE --trust CLIENT_CERT [--user NAME --password-file FILE]]

With --cert the only endpoint is Basic256Sha256 SignAndEncrypt, and only a client with the --trust certificate
gets a channel; with --user the only identity accepted is that user with that password (no anonymous session).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.validator import CertificateValidator
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from stream_ad.sinks.opcua import add_result_object


class OneUser(UserManager):
    def __init__(self, name: str, password: str) -> None:
        self.name, self.password = name, password

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        return User(role=UserRole.User) if (username, password) == (self.name, self.password) else None


def trust_only(trusted: Path) -> Any:
    """A certificate validator: the usual checks (validity, application URI), then this one certificate only."""
    der = x509.load_pem_x509_certificate(trusted.read_bytes()).public_bytes(Encoding.DER)
    basic = CertificateValidator()

    async def validate(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        await basic(cert, app)
        if cert.public_bytes(Encoding.DER) != der:
            raise ua.uaerrors.BadCertificateUntrusted

    return validate


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("results")
    ap.add_argument("--namespace", default="urn:stream-ad:verdicts")
    ap.add_argument("--cert", type=Path)
    ap.add_argument("--key", type=Path)
    ap.add_argument("--trust", type=Path)
    ap.add_argument("--user")
    ap.add_argument("--password-file", type=Path)
    args = ap.parse_args()
    users = OneUser(args.user, args.password_file.read_text().strip()) if args.user else None
    server = Server(user_manager=users)
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/plc")
    if args.cert:
        await server.load_certificate(str(args.cert))
        await server.load_private_key(str(args.key))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        server.set_certificate_validator(trust_only(args.trust))
    if users:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    ns = await server.register_namespace(args.namespace)
    nodes = await add_result_object(server.nodes.objects, ns)
    names = {node.nodeid: name for name, node in nodes.items()}
    out = open(args.results, "a", encoding="utf-8")  # noqa: SIM115 - for the process's life

    async def post_write(event: Any, _dispatcher: Any) -> None:
        written = {names.get(w.NodeId): w.Value.Value.Value for w in event.request_params.NodesToWrite}
        if "Sequence" in written and all(s.is_good() for s in event.response_params):
            for moment in ("Timestamp", "CaptureTime"):
                written[moment] = written[moment].timestamp()
            out.write(json.dumps(written) + "\n")
            out.flush()

    server.subscribe_server_callback(CallbackType.PostWrite, post_write)
    async with server:
        print("ready", flush=True)
        while True:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
