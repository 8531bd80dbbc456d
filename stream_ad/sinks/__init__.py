"""Where verdicts go. A sink takes a batch of verdicts; the sink stage calls every configured sink.

jsonl    one JSON line per verdict (frame id, camera, timestamps, score, threshold, verdict, latency)
stdout   one text line per verdict
images   the alarm store: per alarm the frame, a readable overlay (stream_ad/overlay.py) and a JSON sidecar, bounded
         (alarm_store.py)

PLC sinks (Modbus TCP, OPC UA, MQTT) plug in behind the same interface: subclass Sink, register its kind; they share
the outbox (plc.py, outbox.py) and the reading of their security files and password (credentials.py). Each kind's
module is imported when a pipeline first asks for it (base.LAZY_SINKS).
"""

from stream_ad.frames import Verdict
from stream_ad.sinks.base import SINKS, Sink, make_sink, register_sink

__all__ = ["SINKS", "Sink", "Verdict", "make_sink", "register_sink"]
