"""Who may teach: pipeline.console.operators_file, one operator per line, "NAME TOKEN" (blank lines and # comments
skipped). Read at each request, so a token is added or revoked without a restart. No file configured: nobody may."""

from __future__ import annotations

import hmac
from pathlib import Path

MIN_TOKEN = 16  # characters: a token short enough to guess is refused as the file is read


class OperatorsError(RuntimeError):
    pass


def read_operators(path: Path) -> dict[str, str]:
    """token -> operator name; OperatorsError naming the file and line of anything malformed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise OperatorsError(f"pipeline.console.operators_file {path}: {exc.strerror or exc}") from None
    operators: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2 or len(fields[1]) < MIN_TOKEN:
            raise OperatorsError(f"{path}, line {number}: expected 'NAME TOKEN' with a token of at least "
                                 f"{MIN_TOKEN} characters")
        operators[fields[1]] = fields[0]
    return operators


def operator_for(path: Path | None, token: str | None) -> str | None:
    """The operator holding `token`, else None (no file, no token, or no match); OperatorsError for a bad file."""
    if path is None or not token:
        return None
    for known, name in read_operators(path).items():
        if hmac.compare_digest(known.encode(), token.encode()):
            return name
    return None
