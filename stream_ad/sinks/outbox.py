"""The durable outbox in front of a PLC sink: verdicts are stored in SQLite (WAL, synchronous FULL) before delivery
and removed only once the PLC or broker acknowledged them. One thread delivers them oldest first; a failure is
retried with exponential backoff, and the queue resumes in order when the peer is back.

Semantics (docs/pipeline.md, "The outbox"): at-least-once (a verdict delivered just before a failure or a crash may
come again, with the same sequence number), strictly in order, bounded by max_pending. When full, the oldest ok
verdict goes first, then the oldest alarm: always counted (stream_ad_outbox_overflow_total) and logged. A put()
that cannot store its verdicts (a full disk) raises OutboxError with SQLite's own error.

A status record (inspection not available: announce()) is kept in memory, not stored (it must go out when the disk
takes nothing), and delivered ahead of the queue with sequence number 0, which no stored verdict has.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from stream_ad.settings import OutboxSettings
from stream_ad.sinks.sink_metrics import OutboxMetrics

log = logging.getLogger("stream_ad.sinks.outbox")

STATUS_SEQ = 0  # the sequence number of an announced status record (AUTOINCREMENT starts stored ones at 1)

_SCHEMA = """CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a sequence number is never reused, across restarts
    alarm INTEGER NOT NULL,
    record TEXT NOT NULL
)"""


class OutboxError(OSError):
    """Verdicts could not be stored in the outbox (a full disk, an I/O error): they are not taken."""


class Target(Protocol):
    """What the outbox delivers to (a PLC sink); called from the outbox thread only."""

    def deliver(self, record: dict[str, Any]) -> None:
        """Send one record (with its "seq") and return once the peer acknowledged it; raise on any failure."""

    def tick(self) -> None:
        """Periodic work between deliveries (a heartbeat); may raise."""


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=True)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # a verdict acknowledged by put() survives a power cut
    db.execute(_SCHEMA)
    return db


class Outbox:
    TICK_S = 0.1  # how often an idle outbox gives its target a tick

    def __init__(self, path: Path, cfg: OutboxSettings, sink: str, target: Target) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.sink = sink
        self.target = target
        self.metrics = OutboxMetrics(sink)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(self.path)  # the writer's connection; the thread opens its own
        self._lock = threading.Lock()
        self._pending = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self.metrics.pending.set(self._pending)
        if self._pending:
            log.info("sink %s: %d verdicts left in the outbox %s from before; delivering them first", sink,
                     self._pending, self.path)
        self._status: dict[str, Any] | None = None  # announced, not yet delivered
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"outbox-{sink}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    def put(self, items: list[tuple[bool, dict[str, Any]]]) -> None:
        """Store (alarm, record) pairs durably; returns without waiting for delivery. OutboxError when they could
        not be stored (none of them is)."""
        if not items:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO outbox (alarm, record) VALUES (?, ?)",
                                     [(int(alarm), json.dumps(rec, separators=(",", ":"))) for alarm, rec in items])
                dropped = self._enforce_bound()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"outbox {self.path}: cannot store {len(items)} verdicts: {exc}") from exc
            except BaseException:
                self._rollback()
                raise
            self._pending = self._pending + len(items) - sum(dropped.values())
            self.metrics.pending.set(self._pending)
        if dropped["ok"] or dropped["alarm"]:
            self.metrics.overflow.inc(dropped["ok"] + dropped["alarm"])
            log.error("sink %s: outbox full (max_pending %d): dropped the oldest %d ok verdicts and %d alarms",
                      self.sink, self.cfg.max_pending, dropped["ok"], dropped["alarm"])
        self._wake.set()

    def _rollback(self) -> None:
        # SQLite has rolled back by itself after some errors (SQLITE_FULL): a second ROLLBACK would raise "no
        # transaction is active" and hide the real error.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def announce(self, record: dict[str, Any]) -> None:
        """Deliver this status record next, ahead of the queue, from memory (it replaces one not yet delivered)."""
        with self._lock:
            self._status = {**record, "seq": STATUS_SEQ}
        self._wake.set()

    def _enforce_bound(self) -> dict[str, int]:
        excess = self._pending_in_db() - self.cfg.max_pending
        dropped = {"ok": 0, "alarm": 0}
        for name, alarm in (("ok", 0), ("alarm", 1)):
            if excess <= 0:
                break
            cur = self._db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE alarm = ? ORDER BY seq LIMIT ?)",
                (alarm, excess))
            dropped[name] = cur.rowcount
            excess -= cur.rowcount
        return dropped

    def _pending_in_db(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def _run(self) -> None:
        db = _connect(self.path)
        backoff = self.cfg.retry_initial_s
        failing = False
        try:
            while not self._stop.is_set():
                self._tick()
                status = self._status
                row = None if status else db.execute("SELECT seq, record FROM outbox ORDER BY seq LIMIT 1").fetchone()
                if status is None and row is None:
                    self._wake.wait(self.TICK_S)
                    self._wake.clear()
                    continue
                record = status or {**json.loads(row[1]), "seq": row[0]}
                seq = record["seq"]
                try:
                    self.target.deliver(record)
                except Exception as exc:  # noqa: BLE001 - any failure is retried; the record stays stored
                    self.metrics.retries.inc()
                    if not failing:  # one line per outage, not one per retry
                        log.error("sink %s: delivery of seq %d failed (%s); %d pending, retrying with backoff",
                                  self.sink, seq, exc, self._pending)
                    failing = True
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2.0, self.cfg.retry_max_s)
                    continue
                if failing:
                    log.warning("sink %s: delivering again (seq %d); %d pending", self.sink, seq, self._pending)
                failing, backoff = False, self.cfg.retry_initial_s
                if status is not None:
                    with self._lock:
                        if self._status is status:  # not replaced meanwhile
                            self._status = None
                    continue
                try:
                    with self._lock:
                        removed = db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount
                        self._pending -= removed  # 0 when an overflow took it meanwhile (it was delivered anyway)
                        self.metrics.pending.set(self._pending)
                except sqlite3.Error as exc:  # a full disk: it stays stored and goes again (at-least-once)
                    log.error("sink %s: cannot remove delivered seq %d from the outbox %s (%s); it will be sent "
                              "again", self.sink, seq, self.path, exc)
                    self._stop.wait(backoff)
                    continue
                self.metrics.delivered.inc()
        finally:
            db.close()

    def _tick(self) -> None:
        try:
            self.target.tick()
        except Exception as exc:  # noqa: BLE001 - a failing heartbeat shows as the next delivery's failure
            log.debug("sink %s: tick failed: %s", self.sink, exc)

    def close(self) -> None:
        """Give pending verdicts drain_timeout_s to be delivered, then stop; the rest stays for the next start."""
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while self._pending and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join()
        if self._pending:
            log.warning("sink %s: %d verdicts stay in the outbox %s for the next start", self.sink, self._pending,
                        self.path)
        self._db.close()
