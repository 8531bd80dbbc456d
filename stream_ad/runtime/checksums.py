"""SHA-256 sums of a folder's files in a SHA256SUMS file, as coreutils' `sha256sum` writes it (so `sha256sum -c
SHA256SUMS` in the folder checks it by hand too): model artefacts and the caches derived from them carry one.

The sums catch a damaged or changed file (a flipped bit, a copy cut short, a hand edit); they are no signature: whoever
may write the folder may write its sums too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from stream_ad.errors import ArtefactError

SUMS = "SHA256SUMS"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_sums(folder: Path, sums: Mapping[str, str]) -> None:
    """Atomically (temp + rename): a reader sees the old sums or the new ones, never half of them."""
    tmp = folder / f".{SUMS}.{os.getpid()}.tmp"
    tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())))
    os.replace(tmp, folder / SUMS)


def read_sums(folder: Path) -> dict[str, str] | None:
    """The sums by file name (relative to `folder`); None when the folder has no SHA256SUMS. A malformed line is a
    ValueError naming it."""
    path = folder / SUMS
    if not path.is_file():
        return None
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ValueError(f"{path} line {number} is not 'SHA256  NAME': {line!r}")
        sums[name] = digest
    return sums


def folder_files(folder: Path) -> dict[str, Path]:
    """Every regular file under `folder` (the sums file aside) by its path relative to `folder`."""
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file() and p.name != SUMS}


def seal(folder: Path) -> None:
    """Record the sums of every file now under `folder`."""
    write_sums(folder, {name: sha256_file(path) for name, path in folder_files(folder).items()})


def mismatch(folder: Path) -> str | None:
    """Why `folder` does not match its SHA256SUMS (none, a file missing, changed or not listed); None when it does."""
    try:
        sums = read_sums(folder)
    except ValueError as exc:
        return str(exc)
    if sums is None:
        return f"it has no {SUMS}"
    files = folder_files(folder)
    for name, want in sums.items():
        if name not in files:
            return f"{name} is missing"
        got = sha256_file(files[name])
        if got != want:
            return f"{name} has sha256 {got}, {SUMS} records {want}"
    unlisted = sorted(files.keys() - sums.keys())
    return f"{unlisted[0]} is not in {SUMS}" if unlisted else None


def mismatch_error(path: Path, got: str, want: str, where: str) -> ArtefactError:
    return ArtefactError(f"{path} has sha256 {got} but {where} records {want}: the file was damaged or changed after "
                         "it was written; copy the artefact again or refit")


def checked_read(path: Path, want: str, where: str) -> bytes:
    """An artefact file's bytes, once they match the sum `want` that `where` records: what is checked is what is
    used (no second read to change in between)."""
    if not path.is_file():
        raise ArtefactError(f"{path} is missing: the artefact is incomplete; copy it again")
    data = path.read_bytes()
    got = sha256_bytes(data)
    if got != want:
        raise mismatch_error(path, got, want, where)
    return data


def summed_manifest(folder: Path, name: str) -> tuple[bytes, str | None]:
    """An artefact's manifest bytes and the sum its SHA256SUMS records for them (None: no sum recorded)."""
    path = folder / name
    if not path.is_file():
        raise ArtefactError(f"not a stream_ad model artefact (nor a runtime artefact): {path} is missing")
    try:
        want = (read_sums(folder) or {}).get(name)
    except ValueError as exc:
        raise ArtefactError(f"artefact {folder}: {exc}") from None
    return path.read_bytes(), want
