"""The fault table: the figures the fault tests record (tests/conftest.py FaultFigures), as Markdown.

    .venv/bin/python -m pytest tests/integration -k "fault or ..." --junitxml=/tmp/faults.xml
    .venv/bin/python scripts/fault_table.py /tmp/faults.xml
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from pathlib import Path


def rows(report: Path) -> list[list[str]]:
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else (
            "skipped" if case.find("skipped") is not None else "passed")
        for prop in case.iter("property"):
            if prop.get("name") != "fault_figures":
                continue
            f = json.loads(prop.get("value", "{}"))
            recover = "-" if f["recover_s"] is None else f"{f['recover_s']:.1f} s"
            out.append([f["fault"], f["sent"], f["counted"], str(f["lost"]), recover,
                        f"{case.get('name')} ({outcome})"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="a pytest --junitxml file")
    table = rows(parser.parse_args().report)
    if not table:
        raise SystemExit("no fault figures in the report: run the fault tests with --junitxml")
    header = ["fault", "sent", "counted", "lost without a reason", "time to recover", "test"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in table:
        print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")


if __name__ == "__main__":
    main()
