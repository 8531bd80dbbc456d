"""CURVE on the pipeline's tcp sockets, with real sockets on 127.0.0.1: keys made readable by their owner only, a
peer with the pipeline's client key gets through, peers without CURVE, with other client keys or the wrong server key
are refused at the handshake and counted by reason; ipc sockets stay as they are."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from prometheus_client import CollectorRegistry, Counter

from stream_ad.pipeline.curve import CurveGuard, CurveKeys, Refusal, load_keys, make_keys, secure_client
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.preflight import check_keys
from stream_ad.settings import load_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_made_for_their_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    written = make_keys(folder)
    assert [p.name for p in written] == ["server.key", "server.key_secret", "client.key", "client.key_secret"]
    assert _mode(folder) == 0o700 and all(_mode(p) == 0o600 for p in written)
    keys = load_keys(folder)
    assert len({keys.server_public, keys.server_secret, keys.client_public, keys.client_secret}) == 4
    before = (folder / "server.key_secret").read_bytes()
    with pytest.raises(PipelineError, match="already holds keys"):
        make_keys(folder)
    assert (folder / "server.key_secret").read_bytes() == before


def test_a_missing_or_exposed_key_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    with pytest.raises(PipelineError, match=r"server\.key_secret.*pipeline\.keys_dir.*stream-ad keys"):
        load_keys(folder)
    make_keys(folder)
    (folder / "client.key_secret").chmod(0o640)
    with pytest.raises(PipelineError, match=r"client\.key_secret can be read by other users \(mode 640\)"):
        load_keys(folder)
    settings = load_settings(pipeline={"transport": "tcp", "keys_dir": str(folder)})
    (finding,) = check_keys(settings)
    assert not finding.ok and "chmod 600" in finding.detail
    (folder / "client.key_secret").chmod(0o600)
    (finding,) = check_keys(settings)
    assert finding.ok


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()  # its own: one ZAP handler per context
    yield context
    context.term()


def _counter(registry: CollectorRegistry | None = None) -> Counter:
    return Counter("stream_ad_rejected_peers", "refused", ["stage", "reason"], registry=registry or CollectorRegistry())


class _Server:
    """A PULL socket bound on 127.0.0.1 behind a CurveGuard, counting refusals by reason."""

    def __init__(self, ctx: zmq.Context, keys: CurveKeys | None) -> None:
        self.registry = CollectorRegistry()
        self.guard = CurveGuard(keys, ctx, _counter(self.registry))
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.guard.server(self.sock, "tcp://127.0.0.1:0", "decide")
        self.sock.bind("tcp://127.0.0.1:0")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def received(self, wait_s: float) -> list[bytes]:
        out = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.sock.poll(50):
                out.append(self.sock.recv())
        return out

    def refused(self) -> dict[str, float]:
        """Refusals by reason; every reason's series exists from the start."""
        return {r.value: self.registry.get_sample_value("stream_ad_rejected_peers_total",
                                                        {"stage": "decide", "reason": r.value}) for r in Refusal}

    def close(self) -> None:
        self.sock.close()
        self.guard.close()


def _send(ctx: zmq.Context, endpoint: str, keys: CurveKeys | None, message: bytes) -> None:
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    secure_client(sock, endpoint, keys)
    sock.connect(endpoint)
    sock.send(message)  # queued: delivered only once the handshake succeeds
    time.sleep(0.3)
    sock.close()


def _other_keys(keys: CurveKeys, *, server: bool) -> CurveKeys:
    """Another client key pair; with `server`, another server key too (a client that guessed it)."""
    public, secret = zmq.curve_keypair()
    return CurveKeys(zmq.curve_keypair()[0] if server else keys.server_public, b"", public, secret)


def test_only_a_peer_with_the_pipelines_client_key_gets_through(ctx: zmq.Context, tmp_path: Path) -> None:
    make_keys(tmp_path / "keys")
    keys = load_keys(tmp_path / "keys")
    server = _Server(ctx, keys)
    try:
        assert server.refused() == dict.fromkeys(Refusal, 0.0)
        _send(ctx, server.endpoint, None, b"forged: no CURVE")
        _send(ctx, server.endpoint, _other_keys(keys, server=False), b"forged: other key")
        _send(ctx, server.endpoint, _other_keys(keys, server=True), b"forged: guessed server")
        _send(ctx, server.endpoint, keys, b"the pipeline")
        assert server.received(1.0) == [b"the pipeline"]
        expected = ("no_curve", "unknown_key", "wrong_server_key")
        deadline = time.monotonic() + 5
        while not all(server.refused()[r] for r in expected) and time.monotonic() < deadline:
            time.sleep(0.05)
        # A peer that hangs up while it is refused may add a handshake_error.
        assert all(server.refused()[r] >= 1 for r in expected), server.refused()
    finally:
        server.close()


def test_ipc_sockets_and_a_run_without_keys_stay_as_they_are(ctx: zmq.Context, tmp_path: Path) -> None:
    make_keys(tmp_path / "keys")
    guard = CurveGuard(load_keys(tmp_path / "keys"), ctx, _counter())
    sock = ctx.socket(zmq.PULL)
    guard.server(sock, f"ipc://{tmp_path}/decide.sock", "decide")
    assert sock.getsockopt(zmq.MECHANISM) == zmq.NULL
    unkeyed = CurveGuard(None, ctx, _counter())
    unkeyed.server(sock, "tcp://127.0.0.1:0", "decide")  # pipeline.insecure_tcp
    assert sock.getsockopt(zmq.MECHANISM) == zmq.NULL
    sock.close()
    guard.close()
    unkeyed.close()
