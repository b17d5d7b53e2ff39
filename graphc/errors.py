"""Exceptions a user can cause, all under one root so callers can catch graphc's errors.

Every message names the layer or op involved and the expected vs actual value; shape and
name errors subclass ``ValueError`` so Keras-style ``except ValueError`` keeps working.
"""


class GraphcError(Exception):
    """Root of every error graphc raises on purpose."""


class ShapeError(GraphcError, ValueError):
    """A tensor's shape does not fit the op or layer it is given to."""


class DTypeError(GraphcError, TypeError):
    """A tensor's dtype does not fit the op or layer it is given to."""


class UnknownNameError(GraphcError, ValueError):
    """A string identifier (optimizer, loss, activation, target...) is not known."""


class DataError(GraphcError, ValueError):
    """Training/evaluation data is inconsistent (sample counts, label shapes, NaNs)."""


class VerifyError(GraphcError):
    """The IR verifier found a malformed graph; the message names the node."""


class IRParseError(GraphcError, ValueError):
    """IR text could not be parsed; the message names the line."""


class TargetError(GraphcError, ValueError):
    """A compilation target is unknown or unavailable on this machine."""
