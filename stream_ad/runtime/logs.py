"""Logging as every stream_ad process sets it up (the CLI and each stage worker): one line per event, and the
chatter of dependencies kept to debug.

faiss's loader logs at INFO each optional CPU build it tries and the ModuleNotFoundError of each one missing (eight
lines, two of them exceptions) before it loads the portable build: normal, but it reads like a failure in a
service log. Those lines show with -v only.
"""

from __future__ import annotations

import logging

# Dependencies whose INFO lines are debugging detail for stream_ad's users.
CHATTY_LOGGERS = ("faiss.loader",)


def configure_logging(verbose: bool, fmt: str) -> None:
    """The root logger at INFO (DEBUG with `verbose`), lines formatted by `fmt`; chatty dependencies at WARNING
    unless `verbose`."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
