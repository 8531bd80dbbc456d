"""The failures a user can fix (a missing file, too few images, a model fitted otherwise, flags that do not go
together): the CLI prints their message in one line and exits 2, instead of a traceback."""

from stream_ad.artefact import ArtefactError
from stream_ad.backbones import BackboneError
from stream_ad.calibration import CalibrationError
from stream_ad.data import DatasetError


class CommandError(ValueError):
    """A command's arguments cannot work as given (flags that need each other, an output folder already used)."""


USER_ERRORS: tuple[type[Exception], ...] = (ArtefactError, BackboneError, CalibrationError, CommandError, DatasetError)
