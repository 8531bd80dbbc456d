"""The failures a user can fix (a missing file, too few images, a model fitted otherwise): the CLI prints their
message in one line and exits 2, instead of a traceback."""

from stream_ad.artefact import ArtefactError
from stream_ad.backbones import BackboneError
from stream_ad.calibration import CalibrationError
from stream_ad.data import DatasetError


class RecordError(ValueError):
    """`stream-ad record` cannot write where it was asked (a folder that is not empty, a failed write)."""


USER_ERRORS: tuple[type[Exception], ...] = (ArtefactError, BackboneError, CalibrationError, DatasetError, RecordError)
