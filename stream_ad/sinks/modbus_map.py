"""The Modbus result block: holding registers at base_address + offset (docs/pipeline.md has the table).

32- and 64-bit values take two and four registers, high word first; the camera is ASCII, two characters per register
(high byte first), NUL-padded. Offsets 20..27 (the capture time and the whole frame id) were appended to the
original block, so that its addresses stay. With the handshake the sink writes offsets 20..27, then 1..18 in one
request (FC16); without it, 1..27 in one request: either way result_valid rises with the rest of the result in
place.
"""

from __future__ import annotations

import math
from typing import Any

from pymodbus.client import ModbusTcpClient

from stream_ad.settings import MODBUS_BLOCK_SIZE

HEARTBEAT = 0  # u16, +1 every heartbeat_s (wraps): the PLC watches it change
SEQUENCE = 1  # u32: the outbox sequence number, never reused
FRAME_ID = 3  # u32: the low 32 bits of the frame id (the whole id: FRAME_ID_U64)
VERDICT = 5  # u16: VERDICT_CODES
SCORE = 6  # f32
THRESHOLD = 8  # f32
CAMERA = 10  # 8 registers: 16 ASCII characters
CAMERA_CHARS = 16
RESULT_VALID = 18  # u16: 1 once a new result is in 1..17 and 20..27; 0 after the PLC acknowledged it
ACK = 19  # u16, written by the PLC: the low word of the sequence it has read
CAPTURE_MS = 20  # u64: the frame's capture time, Unix milliseconds (UTC): a PLC rejects a result too late to act on
FRAME_ID_U64 = 24  # u64: the frame id (the JSON lines sink's frame_id; the run's first id is derived from the clock)
BLOCK_SIZE = MODBUS_BLOCK_SIZE  # the settings check base_address + BLOCK_SIZE against the register space
assert FRAME_ID_U64 + 4 == BLOCK_SIZE

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


def stamp_registers(record: dict[str, Any]) -> list[int]:
    """Registers CAPTURE_MS..FRAME_ID_U64+3 for one record: the capture time and the whole frame id."""
    return (ModbusTcpClient.convert_to_registers(round(record["t_capture"] * 1000.0), _T.UINT64)
            + ModbusTcpClient.convert_to_registers(int(record["frame_id"]), _T.UINT64))


def decode_result(block: list[int]) -> dict[str, Any]:
    """The result in a BLOCK_SIZE-register block (what a PLC program reads); for tests and diagnostics."""

    def u32(at: int) -> int:
        return int(ModbusTcpClient.convert_from_registers(block[at:at + 2], _T.UINT32))

    def u64(at: int) -> int:
        return int(ModbusTcpClient.convert_from_registers(block[at:at + 4], _T.UINT64))

    def f32(at: int) -> float:
        return float(ModbusTcpClient.convert_from_registers(block[at:at + 2], _T.FLOAT32))

    camera = b"".join(r.to_bytes(2, "big") for r in block[CAMERA:CAMERA + CAMERA_CHARS // 2]).rstrip(b"\0")
    return {"heartbeat": block[HEARTBEAT], "seq": u32(SEQUENCE), "frame_id_u32": u32(FRAME_ID),
            "frame_id": u64(FRAME_ID_U64), "t_capture_ms": u64(CAPTURE_MS),
            "verdict": VERDICT_NAMES.get(block[VERDICT], str(block[VERDICT])), "score": f32(SCORE),
            "threshold": f32(THRESHOLD),
            "camera": camera.decode("ascii"), "result_valid": block[RESULT_VALID], "ack": block[ACK]}
