"""`stream-ad bench-pipeline` (work in progress)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run_bench(settings, args) -> int:  # noqa: ANN001
    print("stream-ad: bench-pipeline is not written yet", file=sys.stderr)
    return 2
