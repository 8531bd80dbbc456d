#!/usr/bin/env bash
# Sets up .venv for stream_ad: Python 3.11, the pinned torch pair, stream_ad (editable) with its test extra.
# Idempotent and quick on a second run: it reinstalls only when pyproject.toml or the asked extras change.
# EXTRAS=bench adds the benchmark peer (anomalib); nothing here downloads weights or data.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="test${EXTRAS:+,$EXTRAS}"
python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null; then
  echo "setup: $python not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=.venv/.stream-ad-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi
if [ ! -d ../shared ] && [ -z "${STREAM_AD_SHARED_DIR:-}" ]; then
  echo "setup: note: ../shared (data sets and backbone weights) is not beside this checkout;" \
       "set STREAM_AD_SHARED_DIR to where it is" >&2
fi
