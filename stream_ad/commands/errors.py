"""The failures a user can fix (a missing file, too few images, a model fitted otherwise, flags that do not go
together): the CLI prints their message in one line and exits 2, instead of a traceback. Torch-free: `stream-ad run`
of a runtime artefact catches them on a line PC without torch."""

from stream_ad.errors import ArtefactError, BackboneError, CalibrationError, DatasetError


class CommandError(ValueError):
    """A command's arguments cannot work as given (flags that need each other, an output folder already used)."""


USER_ERRORS: tuple[type[Exception], ...] = (ArtefactError, BackboneError, CalibrationError, CommandError, DatasetError)
