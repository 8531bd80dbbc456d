"""Where verdicts go. A sink takes a batch of verdicts; the sink stage calls every configured sink.

jsonl    one JSON line per verdict (frame id, camera, timestamps, score, threshold, verdict, latency)
stdout   one text line per verdict
images   the alarm store: per alarm the frame, a readable overlay (stream_ad/overlay.py) and a JSON sidecar, bounded
         (alarm_store.py)

PLC sinks (Modbus TCP, OPC UA, MQTT) plug in behind the same interface: subclass Sink, register its kind; they share
the outbox (plc.py, outbox.py) and the reading of their security files and password (credentials.py).
"""

from stream_ad.frames import Verdict
from stream_ad.sinks.base import SINKS, Sink, make_sink, register_sink
from stream_ad.sinks.images import ImageSink
from stream_ad.sinks.jsonl import JsonlSink
from stream_ad.sinks.stdout import StdoutSink

__all__ = ["SINKS", "ImageSink", "JsonlSink", "Sink", "StdoutSink", "Verdict", "make_sink", "register_sink"]
