"""`stream-ad keys DIR`: the ZeroMQ CURVE key pairs a tcp pipeline needs (stream_ad.pipeline.curve): server and client,
in DIR (0700), each file readable by this user only (0600). Run it as the service user; pipeline.keys_dir names DIR."""

from __future__ import annotations

import sys
from pathlib import Path

from stream_ad.pipeline.curve import make_keys
from stream_ad.pipeline.errors import PipelineError


def keys(folder: Path) -> int:
    try:
        written = make_keys(folder)
    except (PipelineError, OSError) as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print(f"set pipeline.keys_dir: {folder.absolute()} in each pipeline file that uses tcp", file=sys.stderr)
    return 0
