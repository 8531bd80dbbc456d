"""Modbus TCP: each verdict as a result block in the PLC's holding registers (map: stream_ad.sinks.modbus_map),
with the result-valid / acknowledge handshake of commercial vision sensors, and a heartbeat register."""

from __future__ import annotations

import time
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.pdu import ExceptionResponse

from stream_ad.settings import ModbusSinkSettings
from stream_ad.sinks import modbus_map as rmap
from stream_ad.sinks.base import register_sink
from stream_ad.sinks.plc import OutboxSink, SinkConfigError

ILLEGAL_ADDRESS = 2  # Modbus exception code
ACK_POLL_S = 0.01


@register_sink("modbus")
class ModbusSink(OutboxSink):
    cfg: ModbusSinkSettings
    _client: ModbusTcpClient | None = None
    _beats = 0

    @property
    def endpoint(self) -> str:
        return f"modbus tcp {self.cfg.host}:{self.cfg.port} unit {self.cfg.unit_id} (settings host, port, unit_id)"

    def _check(self, response: Any, what: str, address: int, count: int) -> Any:
        if isinstance(response, ExceptionResponse) and response.exception_code == ILLEGAL_ADDRESS:
            raise SinkConfigError(
                f"the PLC refused {what} holding registers {address}..{address + count - 1} (illegal data address): "
                f"check base_address {self.cfg.base_address} against the PLC's register map")
        if response.isError():
            raise ConnectionError(f"{what} registers {address}..{address + count - 1} failed: {response}")
        return response

    def connect(self) -> None:
        client = ModbusTcpClient(self.cfg.host, port=self.cfg.port, timeout=self.cfg.timeout_s, retries=0)
        self._client = client
        if not client.connect():
            raise ConnectionError(f"no Modbus TCP server answers at {self.cfg.host}:{self.cfg.port}")
        # Read the whole block once: a wrong base_address shows now, not as retries forever.
        base = self.cfg.base_address
        self._check(client.read_holding_registers(base, count=rmap.BLOCK_SIZE, device_id=self.cfg.unit_id),
                    "reading", base, rmap.BLOCK_SIZE)

    def disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def send(self, record: dict[str, Any]) -> None:
        assert self._client is not None
        client, base, unit = self._client, self.cfg.base_address, self.cfg.unit_id
        regs, stamp = rmap.result_registers(record), rmap.stamp_registers(record)
        if not self.cfg.handshake:  # the PLC does not use ACK then: the whole result in one request
            self._write(rmap.SEQUENCE, [*regs, 0, *stamp])
            return
        # result_valid is 0 now (the PLC acknowledged the last result): the stamp first, then the request that
        # raises result_valid, so a PLC that reads on its rise finds all of the result.
        self._write(rmap.CAPTURE_MS, stamp)
        self._write(rmap.SEQUENCE, regs)
        # The PLC acknowledges by writing the sequence's low word to ACK; then result_valid falls for the next one.
        want = record["seq"] & 0xFFFF
        deadline = time.monotonic() + self.cfg.timeout_s
        while True:
            ack = self._check(client.read_holding_registers(base + rmap.ACK, count=1, device_id=unit), "reading",
                              base + rmap.ACK, 1).registers[0]
            if ack == want:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the PLC did not acknowledge seq {record['seq']} within {self.cfg.timeout_s} s "
                                   f"(register {base + rmap.ACK} holds {ack}, expected {want})")
            time.sleep(ACK_POLL_S)
        self._write(rmap.RESULT_VALID, [0])

    def _write(self, offset: int, registers: list[int]) -> None:
        assert self._client is not None
        address = self.cfg.base_address + offset
        self._check(self._client.write_registers(address, registers, device_id=self.cfg.unit_id), "writing",
                    address, len(registers))

    def heartbeat(self) -> None:
        assert self._client is not None
        self._beats = (self._beats + 1) & 0xFFFF
        self._write(rmap.HEARTBEAT, [self._beats])
