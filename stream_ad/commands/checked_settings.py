"""Settings as every command takes them: loaded, and the method's params checked before any work starts (the
settings keep them as a mapping; the scorer registry knows each method's keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream_ad.scorers import scorer_params
from stream_ad.settings import Settings, load_settings


def load_checked_settings(path: Path | None = None, **overrides: Any) -> Settings:
    settings = load_settings(path, **overrides)
    scorer_params(settings.scorer)  # ConfigError naming scorer.method or scorer.params.KEY
    return settings
