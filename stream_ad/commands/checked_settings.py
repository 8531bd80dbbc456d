"""Settings as every command takes them: loaded, and the method's params checked before any work starts (the
settings keep them as a mapping; the scorer registry knows each method's keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream_ad.settings import Settings, load_settings


def load_checked_settings(path: Path | None = None, **overrides: Any) -> Settings:
    # The registry imports every method, and with them torch: imported here, so that importing this module (the CLI
    # does for every command) costs nothing for `stream-ad run` of a runtime artefact.
    from stream_ad.scorers import scorer_params

    settings = load_settings(path, **overrides)
    scorer_params(settings.scorer)  # ConfigError naming scorer.method or scorer.params.KEY
    return settings
