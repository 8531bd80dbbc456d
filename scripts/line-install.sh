#!/usr/bin/env bash
# A line PC's install (README, "A line PC without torch"): VENV made anew without a pip of its own, then the
# requirement(s) given after it installed into it by PIP (default: the pip on PATH, >= 22.3 for --python), then the
# bytecode of what a line PC imports. Usage: scripts/line-install.sh VENV PIP-INSTALL-ARGS...
#   e.g. scripts/line-install.sh /opt/stream-ad/.venv '/opt/stream-ad[line]'
set -euo pipefail
venv="$1"
shift
read -r -a pip <<< "${PIP:-pip}"
"${PYTHON:-python3.11}" -m venv --clear --without-pip "$venv"
"${pip[@]}" --python "$venv/bin/python" install -q --no-compile "$@"
# Compiled here, not at first import: a service user cannot write __pycache__ under /opt, so each start would compile
# every module again. Left out: the dependencies' own test suites and the standard address space of an OPC UA
# *server* (the OPC UA sink is a client), 20 MB of bytecode a line PC never loads (it would still run, compiled in
# memory, if something did).
"$venv/bin/python" -m compileall -q -j 0 -x '/tests?/|/asyncua/server/standard_address_space/' "$venv/lib" >/dev/null
