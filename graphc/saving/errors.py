"""Errors raised while saving or loading models and weights.

All subclass ``graphc.errors.GraphcError`` and ``ValueError`` (Keras raises ``ValueError``
for the same mistakes, so ``except ValueError`` in ported code keeps working); the file and
overwrite errors are also ``FileNotFoundError``/``FileExistsError``.
"""
from __future__ import annotations

from graphc.errors import GraphcError, ShapeError, UnknownNameError


class SavingError(GraphcError, ValueError):
    """Root of the errors of ``graphc.saving``."""


class FileFormatError(SavingError):
    """The file is not a Keras model/weights file, or it is truncated or corrupted."""


class WeightsMismatchError(SavingError, ShapeError):
    """The saved weights do not fit the model: another architecture (layer count, weight
    count or a weight's shape differs). The message names the layer and the weight."""


class UnknownObjectError(SavingError, UnknownNameError):
    """The saved config names a layer/loss/metric/optimizer graphc does not know; pass it in
    ``custom_objects``."""


class ExistingFileError(SavingError, FileExistsError):
    """``overwrite=False`` and the target file exists."""


class MissingFileError(SavingError, FileNotFoundError):
    """The file to load does not exist."""
