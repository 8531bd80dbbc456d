"""A file system that is really full, for the fail-closed tests: a small tmpfs (needs root with CAP_SYS_ADMIN, else
the test is skipped saying so), filled by a file until the kernel answers ENOSPC."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                         text=True, timeout=30, check=False)
    if out.returncode:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root with CAP_SYS_ADMIN): {out.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], capture_output=True, timeout=30, check=False)


def fill(folder: Path) -> Path:
    """Write a filler file in `folder` until its file system is full; returns it (unlink it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for block in (b"\0" * 65536, b"\0" * 512, b"\0"):  # to the last byte the last page holds
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler
