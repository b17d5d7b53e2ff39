"""Keras weight regularizers (``graphc.regularizers``): callables ``reg(x) -> scalar``
written with ``graphc.ops``, so a layer's penalty becomes part of the traced loss (and also
evaluates eagerly on a numpy array)."""
from __future__ import annotations

from typing import Mapping

from graphc import errors
from graphc.frontend import ops
from graphc.frontend.activations import as_tensor, lookup, serialize_object, split_config


class Regularizer:
    """Base class: ``__call__(x) -> scalar`` penalty, ``get_config``/``from_config``."""

    def __call__(self, x):
        return ops.multiply(ops.sum(as_tensor(x)), 0.0)

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: Mapping):
        return cls(**dict(config))

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


def _check(name, value):
    if value is None or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x²)``; the class defaults both factors to 0 (Keras)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check("l1", l1)
        self.l2 = _check("l2", l2)

    def __call__(self, x):
        x = as_tensor(x)
        out = None
        if self.l1:
            out = ops.multiply(ops.sum(ops.abs(x)), self.l1)
        if self.l2:
            t = ops.multiply(ops.sum(ops.square(x)), self.l2)
            out = t if out is None else ops.add(out, t)
        return out if out is not None else ops.multiply(ops.sum(x), 0.0)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    def __init__(self, l1=0.01, **kwargs):
        l1 = kwargs.pop("l", l1)  # Keras 2 keyword
        if kwargs:
            raise TypeError(f"L1: unexpected arguments {sorted(kwargs)}")
        self.l1 = _check("l1", l1)

    def __call__(self, x):
        return ops.multiply(ops.sum(ops.abs(as_tensor(x))), self.l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2=0.01, **kwargs):
        l2 = kwargs.pop("l", l2)  # Keras 2 keyword
        if kwargs:
            raise TypeError(f"L2: unexpected arguments {sorted(kwargs)}")
        self.l2 = _check("l2", l2)

    def __call__(self, x):
        return ops.multiply(ops.sum(ops.square(as_tensor(x))), self.l2)

    def get_config(self):
        return {"l2": self.l2}


l1 = L1
l2 = L2


def l1_l2(l1=0.01, l2=0.01):  # noqa: F811  (factory defaults 0.01, unlike the class)
    """``L1L2`` with both factors 0.01 by default, as ``keras.regularizers.l1_l2``."""
    return L1L2(l1=l1, l2=l2)


ALL_REGULARIZERS = {"l1": L1, "L1": L1, "l2": L2, "L2": L2, "l1_l2": l1_l2, "L1L2": L1L2}


def serialize(regularizer) -> dict | None:
    return serialize_object(get(regularizer), "keras.regularizers")


def deserialize(config: Mapping, custom_objects: Mapping | None = None):
    name, cfg = split_config("regularizer", config)
    cls = (custom_objects or {}).get(name) or lookup("regularizer", name, ALL_REGULARIZERS)
    cfg = dict(cfg or {})
    return cls.from_config(cfg) if hasattr(cls, "from_config") else cls(**cfg)


def get(identifier):
    """A name (``'l1'``, ``'l2'``, ``'l1_l2'``: factor 0.01), a Regularizer, a callable, a
    config dict, or None."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        return lookup("regularizer", identifier, ALL_REGULARIZERS)()
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise errors.UnknownNameError(
        f"Could not interpret regularizer identifier {identifier!r}: expected a name "
        f"({', '.join(sorted(ALL_REGULARIZERS))}), a Regularizer, a callable or a config dict")
