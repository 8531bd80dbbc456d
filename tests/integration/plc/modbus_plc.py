"""A PLC on 127.0.0.1 for the tests: a pymodbus TCP server whose holding registers hold the stream_ad result block,
and a 'PLC program' that, when result_valid rises, logs the result as a JSON line and acknowledges it.

    python modbus_plc.py PORT RESULTS.jsonl [--base ADDRESS] [--registers N] [--no-ack]
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from typing import IO

from pymodbus.server import StartTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from stream_ad.sinks import modbus_map as rmap

WRITE_REGISTERS = 16


async def plc_program(results: IO[str], ack: bool, base: int, function_code: int, start_address: int, address: int,
                      count: int, registers: list[int], set_values: list[int] | None) -> None:
    """Runs before each request is applied: a write that raises result_valid is a new result."""
    if function_code != WRITE_REGISTERS or not set_values:
        return
    at = base - start_address  # the block's index in `registers`
    block = list(registers[at:at + rmap.BLOCK_SIZE])
    first = address - base
    block[max(first, 0):first + count] = set_values[max(-first, 0):max(-first, 0) + rmap.BLOCK_SIZE - max(first, 0)]
    if first <= rmap.RESULT_VALID < first + count and block[rmap.RESULT_VALID] == 1:
        result = rmap.decode_result(block)
        results.write(json.dumps(result) + "\n")
        results.flush()
        if ack:
            registers[at + rmap.ACK] = result["seq"] & 0xFFFF


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("results")
    ap.add_argument("--base", type=int, default=0)
    ap.add_argument("--registers", type=int, default=100)
    ap.add_argument("--no-ack", action="store_true")
    args = ap.parse_args()
    results = open(args.results, "a", encoding="utf-8")  # noqa: SIM115 - for the process's life
    device = SimDevice(id=1, simdata=[SimData(0, count=args.registers, datatype=DataType.REGISTERS)],
                       action=partial(plc_program, results, not args.no_ack, args.base))
    StartTcpServer(context=device, address=("127.0.0.1", args.port))


if __name__ == "__main__":
    main()
