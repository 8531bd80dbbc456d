"""Where a benchmark ran and where its figures go: shared by the benchmarks that write a JSON file and a report."""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """The machine a benchmark runs on: CPUs, platform, Python, and the load average as it starts."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_avg_at_start": list(os.getloadavg())}


def write_figures(figures: dict[str, Any], out_json: Path, report: Callable[[dict[str, Any]], str]) -> int:
    """The load average at the end noted in figures["machine"], the figures written to `out_json`, the report
    printed; 0, the benchmark's exit status."""
    figures["machine"]["load_avg_at_end"] = list(os.getloadavg())
    out_json.write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))
    print(f"figures: {out_json}")
    return 0


def categories_parser(prog: str, doc: str | None, config_help: str) -> argparse.ArgumentParser:
    """The command line of a benchmark over MVTec-layout category folders: the folders, and a settings file."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("categories", type=Path, nargs="+", help="MVTec-AD-layout category folders")
    parser.add_argument("-c", "--config", type=Path, help=config_help)
    return parser
