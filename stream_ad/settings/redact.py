"""Passwords written into URLs (rtsp://user:secret@camera) masked wherever a settings value is shown: an error's
echo of the input, `stream-ad config show`."""

from __future__ import annotations

import re
from typing import Any

# scheme://user:password@ -> scheme://user:***@ (the user stays: it helps find the entry). The password runs to the
# authority's last @, so one written with an unescaped @ is masked whole.
_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^/@\s:]*):[^/\s]*@")


def hide_passwords(value: Any) -> Any:
    """`value` with the password of every URL in it masked, nested mappings and lists included."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1:***@", value)
    if isinstance(value, dict):
        return {k: hide_passwords(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(hide_passwords(v) for v in value)
    return value
