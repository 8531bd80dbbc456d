#!/usr/bin/env bash
# Sets up .venv for stream_ad: Python 3.11, the pinned torch pair, stream_ad (editable) with its fit and test extras;
# and .venv-line, the torch-free line install (`pip install -e .[line]`) that tests/integration/pipeline/test_line.py
# runs a pipeline in (LINE_VENV=0 skips it).
# Idempotent and quick on a second run: it reinstalls only when pyproject.toml or the asked extras change.
# EXTRAS=bench adds the benchmark peer (anomalib), EXTRAS=openvino the OpenVINO backbone path for CPU-only line PCs
# (EXTRAS=bench,openvino for both; the test extra already has openvino); nothing here downloads weights or data.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="fit,test${EXTRAS:+,$EXTRAS}"
python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null; then
  echo "setup: $python not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

# Test-only system packages: a real Prometheus to scrape the pipeline (and promtool), systemd-analyze to verify the
# unit, and GStreamer's RTSP server (with the headers PyGObject builds against) to act as an IP camera on 127.0.0.1
# (test videos are written with PyAV, no ffmpeg CLI).
# mosquitto is the MQTT broker of the PLC sink tests; aravis-tools and gir1.2-aravis-0.8 give aravis (the gige
# source, through PyGObject) and its fake GigE Vision camera. chromium and chromium-driver: a real browser for eval's
# HTML report and the operator's console (selenium).
# Installed only when missing and only as root or with sudo; without them the tests that need them say so.
system_packages=(prometheus systemd gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad libgirepository1.0-dev libcairo2-dev mosquitto aravis-tools gir1.2-aravis-0.8
  chromium chromium-driver)
missing=()
for pkg in "${system_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo="sudo -n"; }
  if [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; then
    echo "setup: installing system packages for the tests: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: note: missing system packages for some tests (need root or sudo): ${missing[*]}" >&2
  fi
fi

stamp=.venv/.stream-ad-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi
if [ "${LINE_VENV:-1}" != 0 ]; then
  line_want="$(sha256sum pyproject.toml | cut -d' ' -f1) line"
  if [ "$(cat .venv-line/.stream-ad-setup 2>/dev/null)" != "$line_want" ]; then
    # Made anew, as a line PC's (README, "A line PC without torch"): nothing the line extra no longer pulls (scipy)
    # lingers, and no pip of its own (26 MB): .venv's pip installs into it.
    PIP=".venv/bin/python -m pip" PYTHON="$python" bash scripts/line-install.sh .venv-line -e ".[line]"
    echo "$line_want" > .venv-line/.stream-ad-setup
  fi
fi
if [ ! -d ../shared ] && [ -z "${STREAM_AD_SHARED_DIR:-}" ]; then
  echo "setup: note: ../shared (data sets and backbone weights) is not beside this checkout;" \
       "set STREAM_AD_SHARED_DIR to where it is" >&2
fi
