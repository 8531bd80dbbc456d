"""Session fixtures shared by the pytest-xdist workers of one run (`pytest -n 2 --dist loadfile`; one process by
default, where this changes nothing).

Each worker is a process of its own, so a session fixture runs once per worker: the demo run and the console's
fit, up to a minute of CPU each on the 2-core CI machine, would run twice. `once_per_run` gives every worker the
same folder and lets the first one to arrive make its contents while the others wait on a file lock, then read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from filelock import FileLock

DONE = ".made"


@contextmanager
def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """(folder, whether to make it): the folder `name`, the same for every worker of this pytest run; True for the
    first worker only (the one that makes it, under the lock). A maker that raises leaves it unmade, so the next
    worker tries again and fails the same way in its own tests."""
    root = tmp_path_factory.getbasetemp()
    if root.name.startswith("popen-gw"):  # a worker's own base; its parent is the run's
        root = root.parent
    folder = root / name
    with FileLock(f"{folder}.lock"):
        make = not (folder / DONE).is_file()
        if make:
            folder.mkdir(parents=True, exist_ok=True)
        yield folder, make
        (folder / DONE).touch()
