"""The files and the password a PLC sink's security settings name, read when it connects (so a rotated password or
certificate is taken at the next reconnect). The password stays a SecretStr up to the client library's call: its
repr is masked, so no log line or error of ours can print it."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from stream_ad.settings import Credentials
from stream_ad.sinks.plc import SinkConfigError


def readable(path: Path, key: str) -> Path:
    """`path`, once it opens for reading; else a SinkConfigError naming the setting `key` and the path."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise SinkConfigError(f"setting {key}: cannot read {path}: {exc.strerror}") from None
    return path


def password(cfg: Credentials) -> SecretStr | None:
    """The password of `cfg` (one line of password_file, or the variable password_env); None without a user."""
    if cfg.password_file is not None:
        try:
            text = readable(cfg.password_file, "password_file").read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SinkConfigError(f"setting password_file: {cfg.password_file} is not UTF-8 text") from None
        text, where = text.removesuffix("\n").removesuffix("\r"), f"password_file {cfg.password_file}"
    elif cfg.password_env is not None:
        if cfg.password_env not in os.environ:
            raise SinkConfigError(f"setting password_env: the environment variable {cfg.password_env} is not set")
        text, where = os.environ[cfg.password_env], f"password_env {cfg.password_env}"
    else:
        return None
    if not text:
        raise SinkConfigError(f"setting {where}: the password is empty")
    return SecretStr(text)
