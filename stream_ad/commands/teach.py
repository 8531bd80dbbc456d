"""`stream-ad teach list|rollback MODEL`: the teachings of a model artefact (the console's "good" button), and undoing
them. Who may write the artefact folder may roll back (the service user); the page's teaching needs a token."""

from __future__ import annotations

import logging
from pathlib import Path

from stream_ad.artefact import read_manifest, rollback_teaching

log = logging.getLogger("stream_ad.commands.teach")


def teach_list(model: Path) -> int:
    teaching = read_manifest(model).teaching
    if not teaching:
        print(f"{model}: version 0, as fitted (never taught)")
    for entry in teaching:
        print(f"version {entry['version']}: {entry['time']} {entry['operator']} taught {entry['camera']} frame "
              f"{entry['frame_id']} ({entry['patches']} patches, score {entry['score_before']:.4f} -> "
              f"{entry['score_after']:.4f}); {entry['frame']['file']}")
    return 0


def teach_rollback(model: Path, to_version: int | None) -> int:
    removed = rollback_teaching(model, to_version)
    left = len(read_manifest(model).teaching)
    for entry in removed:
        # One line per change, in the log (journald) as well as on the terminal.
        log.warning("teach rollback: %s version %d (taught by %s at %s, %s frame %s) removed", model,
                    entry["version"], entry["operator"], entry["time"], entry["camera"], entry["frame_id"])
    print(f"{model} is at version {left}; a running pipeline serves it from its next restart "
          f"(systemctl restart stream-ad@NAME)")
    return 0
