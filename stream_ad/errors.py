"""The failures a user can fix (a missing or damaged file, too few images, a model fitted otherwise): the CLI prints
their message in one line and exits 2. Defined at the bottom, importing nothing but pathlib, so the CLI catches them
without importing the code that raises them (torch, on a line PC that runs an exported artefact without it)."""

from pathlib import Path


def located(path: Path) -> str:
    """A path for a message about it: as given, and where it points when relative. Relative paths (the default
    shared_dir ../shared among them) are read from the working directory, not from the checkout or the settings file:
    a command run from another folder looks elsewhere."""
    if path.is_absolute():
        return str(path)
    return f"{path} (that is {Path.cwd() / path}: relative to the working directory)"


class ArtefactError(RuntimeError):
    """A model or runtime artefact is missing, damaged, of another kind or format, or fitted otherwise."""


class BackboneError(RuntimeError):
    """A backbone cannot be built: unknown name or tap, weights missing or other than recorded."""


class CalibrationError(ValueError):
    """Calibration cannot give what was asked (too few images, images seen in fitting); the message says why."""


class DatasetError(ValueError):
    """A data folder is missing, empty or not in the layout it should be in."""
