"""How a settings error reads: the dotted key, what is wrong, and where the value came from."""

from __future__ import annotations

from pydantic import ValidationError

from stream_ad.settings.pipeline import SINK_SETTINGS
from stream_ad.settings.redact import hide_passwords


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message names the key and where it came from."""


# The tags of the sink union: pydantic puts them in an error's location (pipeline.sink.outputs.0.modbus.port).
SINK_KINDS = frozenset(c.model_fields["kind"].default for c in SINK_SETTINGS)


def _is_union_tag(loc: tuple[int | str, ...], i: int) -> bool:
    """pydantic puts a tagged union member's tag in the error location (outputs.0.modbus.port): not a key."""
    return i > 0 and isinstance(loc[i - 1], int) and loc[i] in SINK_KINDS


def format_errors(err: ValidationError, origin: str, prefix: str = "") -> str:
    lines = [f"invalid settings ({origin}):"]
    for e in err.errors():
        loc = [p for i, p in enumerate(e["loc"]) if not _is_union_tag(e["loc"], i)]
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc.append(e["ctx"]["discriminator"].strip("'"))
        key = (prefix + ".".join(str(p) for p in loc)).rstrip(".")  # a check of the whole section has no key
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {hide_passwords(e.get('input'))!r})")
    return "\n".join(lines)

