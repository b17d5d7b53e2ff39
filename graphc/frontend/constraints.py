"""Keras weight constraints (``graphc.constraints``): callables ``c(w) -> new w`` written with
``graphc.ops``; the optimizer applies a variable's constraint to its updated value inside
the train-step graph (as Keras applies constraints after each update)."""
from __future__ import annotations

from typing import Mapping

from graphc import errors
from graphc.frontend import ops
from graphc.frontend.activations import as_tensor, lookup, serialize_object, split_config

EPSILON = 1e-7  # keras.backend.epsilon()


class Constraint:
    """Base class: the identity."""

    def __call__(self, w):
        return w

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: Mapping):
        return cls(**dict(config))

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


def _norms(w, axis):
    return ops.sqrt(ops.sum(ops.square(w), axis=axis, keepdims=True))


class MaxNorm(Constraint):
    """Rescale slices (along ``axis``) whose L2 norm exceeds ``max_value``."""

    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = max_value, axis

    def __call__(self, w):
        w = as_tensor(w)
        norms = _norms(w, self.axis)
        desired = ops.clip(norms, 0.0, float(self.max_value))
        return ops.multiply(w, ops.divide(desired, ops.add(norms, EPSILON)))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Zero the negative weights."""

    def __call__(self, w):
        w = as_tensor(w)
        return ops.multiply(w, ops.cast(ops.greater_equal(w, 0.0), ops.dtype_of(w)))


class UnitNorm(Constraint):
    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = as_tensor(w)
        return ops.divide(w, ops.add(_norms(w, self.axis), EPSILON))

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Norms moved toward ``[min_value, max_value]`` at ``rate`` (1 = clip exactly)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        w = as_tensor(w)
        norms = _norms(w, self.axis)
        clipped = ops.clip(norms, float(self.min_value), float(self.max_value))
        desired = ops.add(ops.multiply(clipped, float(self.rate)),
                          ops.multiply(norms, 1.0 - float(self.rate)))
        return ops.multiply(w, ops.divide(desired, ops.add(norms, EPSILON)))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

ALL_CONSTRAINTS = {"max_norm": MaxNorm, "MaxNorm": MaxNorm, "non_neg": NonNeg,
                   "NonNeg": NonNeg, "unit_norm": UnitNorm, "UnitNorm": UnitNorm,
                   "min_max_norm": MinMaxNorm, "MinMaxNorm": MinMaxNorm}


def serialize(constraint) -> dict | None:
    return serialize_object(get(constraint), "keras.constraints")


def deserialize(config: Mapping, custom_objects: Mapping | None = None):
    name, cfg = split_config("constraint", config)
    cls = (custom_objects or {}).get(name) or lookup("constraint", name, ALL_CONSTRAINTS)
    return cls.from_config(dict(cfg or {}))


def get(identifier):
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str):
        return lookup("constraint", identifier, ALL_CONSTRAINTS)()
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise errors.UnknownNameError(
        f"Could not interpret constraint identifier {identifier!r}: expected a name "
        f"({', '.join(sorted(ALL_CONSTRAINTS))}), a Constraint, a callable or a config dict")
