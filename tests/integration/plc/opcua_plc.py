"""An OPC UA server on 127.0.0.1 as the PLC for the tests (asyncua): it holds stream_ad's result object and logs
each result write (a Write request that sets Sequence) as a JSON line, from the request itself.

    python opcua_plc.py PORT RESULTS.jsonl [--namespace URI]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from asyncua import Server
from asyncua.common.callback import CallbackType

from stream_ad.sinks.opcua import add_result_object


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("results")
    ap.add_argument("--namespace", default="urn:stream-ad:verdicts")
    args = ap.parse_args()
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/plc")
    ns = await server.register_namespace(args.namespace)
    nodes = await add_result_object(server.nodes.objects, ns)
    names = {node.nodeid: name for name, node in nodes.items()}
    out = open(args.results, "a", encoding="utf-8")  # noqa: SIM115 - for the process's life

    async def post_write(event: Any, _dispatcher: Any) -> None:
        written = {names.get(w.NodeId): w.Value.Value.Value for w in event.request_params.NodesToWrite}
        if "Sequence" in written and all(s.is_good() for s in event.response_params):
            written["Timestamp"] = written["Timestamp"].timestamp()
            out.write(json.dumps(written) + "\n")
            out.flush()

    server.subscribe_server_callback(CallbackType.PostWrite, post_write)
    async with server:
        print("ready", flush=True)
        while True:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
