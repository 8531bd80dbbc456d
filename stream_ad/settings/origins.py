"""Where each effective setting came from: the built-in default, the YAML file, or a STREAM_AD_* variable (later
wins, as load_settings reads them)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stream_ad.settings.load import env_keys, read_settings_file

DEFAULT = "default"
Key = tuple[str, ...]


def leaves(tree: Mapping[str, Any], prefix: Key = ()) -> Iterator[tuple[Key, Any]]:
    """(key path, value) of every leaf of a nested mapping; a list or an empty mapping is a leaf."""
    for name, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from leaves(value, (*prefix, name))
        else:
            yield (*prefix, name), value


def _overlaps(key: Key, given: Key) -> bool:
    """A value given for a key, a section above it (a whole mapping in one variable) or a part of it sets it."""
    n = min(len(key), len(given))
    return key[:n] == given[:n]


def value_origins(effective: Mapping[str, Any], path: Path | None, environ: Mapping[str, str]) -> dict[Key, str]:
    """Each leaf of `effective` (settings as a nested mapping) -> the variable, the file or DEFAULT it came from."""
    # An empty mapping in the file (`params: {}`) sets nothing below it.
    in_file = [key for key, v in leaves(read_settings_file(path)) if v != {}] if path is not None else []
    in_env = env_keys(environ)
    origins = {}
    for key, _ in leaves(effective):
        var = next((v for v, given in sorted(in_env.items()) if _overlaps(key, given)), None)
        if var is not None:
            origins[key] = var
        elif any(_overlaps(key, given) for given in in_file):
            origins[key] = str(path)
        else:
            origins[key] = DEFAULT
    return origins
