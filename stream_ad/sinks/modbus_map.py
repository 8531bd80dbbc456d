"""The Modbus result block: holding registers at base_address + offset (docs/pipeline.md has the table).

32-bit values take two registers, high word first; the camera is ASCII, two characters per register (high byte
first), NUL-padded. The sink writes offsets 1..18 in one request (FC16), so result_valid rises with the data.
"""

from __future__ import annotations

import math
from typing import Any

from pymodbus.client import ModbusTcpClient

from stream_ad.settings import MODBUS_BLOCK_SIZE

HEARTBEAT = 0  # u16, +1 every heartbeat_s (wraps): the PLC watches it change
SEQUENCE = 1  # u32: the outbox sequence number, never reused
FRAME_ID = 3  # u32: the camera frame id (the JSON lines sink's frame_id)
VERDICT = 5  # u16: VERDICT_CODES
SCORE = 6  # f32
THRESHOLD = 8  # f32
CAMERA = 10  # 8 registers: 16 ASCII characters
CAMERA_CHARS = 16
RESULT_VALID = 18  # u16: 1 once a new result is in 1..17; 0 after the PLC acknowledged it
ACK = 19  # u16, written by the PLC: the low word of the sequence it has read
BLOCK_SIZE = MODBUS_BLOCK_SIZE  # the settings check base_address + BLOCK_SIZE against the register space
assert ACK < BLOCK_SIZE

_T = ModbusTcpClient.DATATYPE
# "unavailable": inspection not available (the pipeline's safe state); score and threshold are NaN then.
VERDICT_CODES = {"ok": 0, "anomaly": 1, "unavailable": 2}
VERDICT_NAMES = {code: name for name, code in VERDICT_CODES.items()}


def _f32(value: float | None) -> list[int]:
    return ModbusTcpClient.convert_to_registers(math.nan if value is None else float(value), _T.FLOAT32)


def result_registers(record: dict[str, Any]) -> list[int]:
    """Registers SEQUENCE..RESULT_VALID (inclusive) for one verdict record, result_valid set."""
    camera = str(record["camera"]).encode("ascii")
    if len(camera) > CAMERA_CHARS:
        raise ValueError(f"camera {record['camera']!r} is longer than {CAMERA_CHARS} characters")
    camera = camera.ljust(CAMERA_CHARS, b"\0")
    regs = (
        ModbusTcpClient.convert_to_registers(record["seq"] & 0xFFFFFFFF, _T.UINT32)
        + ModbusTcpClient.convert_to_registers(int(record["frame_id"]) & 0xFFFFFFFF, _T.UINT32)
        + [VERDICT_CODES[record["verdict"]]]
        + _f32(record["score"])
        + _f32(record["threshold"])
        + [int.from_bytes(camera[i:i + 2], "big") for i in range(0, CAMERA_CHARS, 2)]
        + [1]
    )
    assert len(regs) == RESULT_VALID - SEQUENCE + 1
    return regs


def decode_result(block: list[int]) -> dict[str, Any]:
    """The result in a BLOCK_SIZE-register block (what a PLC program reads); for tests and diagnostics."""

    def u32(at: int) -> int:
        return int(ModbusTcpClient.convert_from_registers(block[at:at + 2], _T.UINT32))

    def f32(at: int) -> float:
        return float(ModbusTcpClient.convert_from_registers(block[at:at + 2], _T.FLOAT32))

    camera = b"".join(r.to_bytes(2, "big") for r in block[CAMERA:CAMERA + CAMERA_CHARS // 2]).rstrip(b"\0")
    return {"heartbeat": block[HEARTBEAT], "seq": u32(SEQUENCE), "frame_id": u32(FRAME_ID),
            "verdict": VERDICT_NAMES.get(block[VERDICT], str(block[VERDICT])), "score": f32(SCORE),
            "threshold": f32(THRESHOLD),
            "camera": camera.decode("ascii"), "result_valid": block[RESULT_VALID], "ack": block[ACK]}
