"""What a PLC reads for a safe-state record (verdict "unavailable": inspection not available), next to an ordinary
verdict: the Modbus result block and the OPC UA field values."""

from __future__ import annotations

import math

from stream_ad.sinks import modbus_map as rmap
from stream_ad.sinks.opcua import field_values

VERDICT = {"seq": 7, "frame_id": 41, "camera": "line1", "verdict": "anomaly", "score": 3.5, "threshold": 2.0,
           "t_verdict": 1_800_000_000.0}
UNAVAILABLE = {**VERDICT, "seq": 0, "frame_id": 42, "verdict": "unavailable", "score": None, "threshold": None}


def _block(record: dict) -> list[int]:
    block = [0] * rmap.BLOCK_SIZE
    block[rmap.SEQUENCE:rmap.RESULT_VALID + 1] = rmap.result_registers(record)
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
