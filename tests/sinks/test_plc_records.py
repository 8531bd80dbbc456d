"""What a PLC reads for a safe-state record (verdict "unavailable": inspection not available), next to an ordinary
verdict: the Modbus result block and the OPC UA field values, with the capture time that lets it reject a late one."""

from __future__ import annotations

import math

import pytest

from stream_ad.sinks import modbus_map as rmap
from stream_ad.sinks.opcua import field_values

VERDICT = {"seq": 7, "frame_id": 41, "camera": "line1", "verdict": "anomaly", "score": 3.5, "threshold": 2.0,
           "t_capture": 1_799_999_999.8768, "t_verdict": 1_800_000_000.0, "run_id": "run-a"}
UNAVAILABLE = {**VERDICT, "seq": 0, "frame_id": 42, "verdict": "unavailable", "score": None, "threshold": None}


def _block(record: dict) -> list[int]:
    block = [0] * rmap.BLOCK_SIZE
    block[rmap.SEQUENCE:rmap.RESULT_VALID + 1] = rmap.result_registers(record)
    block[rmap.CAPTURE_MS:] = rmap.stamp_registers(record)
    return block


def test_modbus_block_carries_verdict_code_2_and_nan_for_unavailable() -> None:
    ok = rmap.decode_result(_block(VERDICT))
    assert (ok["verdict"], ok["score"], ok["threshold"], ok["seq"]) == ("anomaly", 3.5, 2.0, 7)
    block = _block(UNAVAILABLE)
    assert block[rmap.VERDICT] == 2 and block[rmap.RESULT_VALID] == 1
    got = rmap.decode_result(block)
    assert (got["verdict"], got["seq"], got["frame_id"]) == ("unavailable", 0, 42)
    assert math.isnan(got["score"]) and math.isnan(got["threshold"])


def test_opcua_values_raise_the_alarm_for_unavailable() -> None:
    assert field_values(VERDICT)["Alarm"] is True and field_values({**VERDICT, "verdict": "ok"})["Alarm"] is False
    values = field_values(UNAVAILABLE)
    assert values["Verdict"] == "unavailable" and values["Alarm"] is True and values["Sequence"] == 0
    assert math.isnan(values["Score"]) and math.isnan(values["Threshold"])


def test_modbus_block_carries_the_capture_time_and_the_whole_frame_id_after_the_original_block() -> None:
    big = {**VERDICT, "frame_id": 1_750_000_000_123_456}  # a run's ids start at the clock in microseconds
    got = rmap.decode_result(_block(big))
    assert got["t_capture_ms"] == 1_799_999_999_877  # Unix milliseconds, rounded
    assert got["frame_id"] == big["frame_id"] and got["frame_id_u32"] == big["frame_id"] & 0xFFFFFFFF
    # The original registers kept their offsets: the result's other fields are where they were.
    assert (rmap.CAPTURE_MS, rmap.FRAME_ID_U64, rmap.BLOCK_SIZE) == (rmap.ACK + 1, rmap.ACK + 5, rmap.ACK + 9)
    assert (got["verdict"], got["score"], got["camera"], got["seq"]) == ("anomaly", 3.5, "line1", 7)


def test_opcua_values_carry_capture_time_and_run_id() -> None:
    values = field_values(VERDICT)
    assert values["CaptureTime"].timestamp() == pytest.approx(VERDICT["t_capture"], abs=1e-6)
    assert values["RunId"] == "run-a" and values["Timestamp"].timestamp() == VERDICT["t_verdict"]
