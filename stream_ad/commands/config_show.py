"""`stream-ad config show`: the effective settings as YAML, each leaf with where its value came from."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from stream_ad.scorers import scorer_params
from stream_ad.settings import Settings
from stream_ad.settings.origins import Key, value_origins
from stream_ad.settings.redact import hide_passwords


def effective_settings(settings: Settings) -> dict[str, Any]:
    """The settings as a nested mapping, the method's params complete with their defaults; a password written in
    a URL (rtsp://user:password@camera) masked."""
    tree = settings.model_dump(mode="json")
    tree["scorer"]["params"] = scorer_params(settings.scorer).model_dump(mode="json")
    return hide_passwords(tree)


def _scalar(value: Any) -> str:
    # Flow style keeps a list (layers, sink outputs) on its key's line, so each leaf is one line with its origin.
    return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).removesuffix("\n...\n").strip()


def render(tree: Mapping[str, Any], origins: Mapping[Key, str], prefix: Key = ()) -> list[str]:
    """YAML lines of `tree`, every leaf line ending in `# ORIGIN`."""
    lines = []
    indent = "  " * len(prefix)
    for name, value in tree.items():
        key = (*prefix, name)
        if isinstance(value, Mapping) and value:
            lines.append(f"{indent}{name}:")
            lines.extend(render(value, origins, key))
        else:
            lines.append(f"{indent}{name}: {_scalar(value)}  # {origins[key]}")
    return lines


def config_show(settings: Settings, path: Path | None) -> int:
    """Print the effective settings (defaults < the YAML at `path` < STREAM_AD_* variables) with their origins."""
    tree = effective_settings(settings)
    print("\n".join(render(tree, value_origins(tree, path, os.environ))))
    return 0
