"""Keras activation functions (``graphc.activations``), written with ``graphc.ops`` only, so
each one emits IR inside a trace and runs eagerly on numpy arrays outside one.

Also home of the small name-resolution helpers that the other Keras-object modules
(initializers, losses, metrics, optimizers, regularizers, constraints) share: one place that
turns an unknown string into an ``UnknownNameError`` listing the valid names.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from graphc import errors
from graphc.frontend import ops
from graphc.ir.registry import has_op

# --------------------------------------------------------------------------------------
# Shared helpers (used by the sibling modules)
# --------------------------------------------------------------------------------------


def lookup(kind: str, name: str, table: Mapping[str, Any]):
    """``table[name]``; else a case-insensitive match (``'Adam'``, ``'RMSProp'``); else an
    ``UnknownNameError`` naming every valid identifier, so a typo is fixed at a glance."""
    if name in table:
        return table[name]
    folded = {k.lower(): v for k, v in table.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    raise errors.UnknownNameError(
        f"Unknown {kind} identifier {name!r}. Valid {kind} names: "
        f"{', '.join(sorted(table, key=str.lower))}")


def split_config(kind: str, identifier: Mapping) -> tuple[str, dict]:
    """``(class_name, config)`` of a Keras 3 (``module``/``class_name``/``config``/
    ``registered_name``) or Keras 2 (``class_name``/``config``) serialized object."""
    if "class_name" not in identifier:
        raise errors.UnknownNameError(
            f"Could not interpret {kind} config {dict(identifier)!r}: it has no 'class_name'")
    cfg = identifier.get("config")
    return identifier["class_name"], (dict(cfg) if isinstance(cfg, Mapping) else cfg)


def serialize_object(obj, module: str) -> dict | None:
    """Keras 3 form of an initializer/regularizer/constraint: ``{"module", "class_name",
    "config", "registered_name"}``; a plain function is written by name, as Keras does."""
    if obj is None:
        return None
    if not hasattr(obj, "get_config"):
        return {"module": None, "class_name": "function",
                "config": getattr(obj, "__name__", repr(obj)), "registered_name": None}
    return {"module": module, "class_name": type(obj).__name__,
            "config": obj.get_config(), "registered_name": None}


def is_symbolic(x) -> bool:
    from graphc.frontend.variables import Variable
    from graphc.ir.graph import Value
    return isinstance(x, (Value, Variable))


def as_tensor(x, float_only: bool = False):
    """Graph values pass through; Python numbers/lists become numpy arrays (ints become
    float32 when ``float_only``), so every function below also runs eagerly."""
    if is_symbolic(x):
        return x
    arr = np.asarray(x)
    if float_only and arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    return arr


def _axis(x, axis: int) -> int:
    # IR attributes carry non-negative axes (see graphc.ir.ops.reduce).
    r = ops.rank(x)
    if not -r <= axis < r:
        raise errors.ShapeError(f"softmax: axis {axis} out of range for a rank-{r} tensor")
    return axis % r


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------


def linear(x):
    return as_tensor(x)


def relu(x, negative_slope: float = 0.0, max_value: float | None = None,
         threshold: float = 0.0):
    """Keras 3 ``relu`` with its optional ``negative_slope``/``max_value``/``threshold``."""
    x = as_tensor(x, True)
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return ops.relu(x)
    if threshold != 0.0:
        y = ops.where(ops.greater(x, threshold), x, ops.multiply(x, 0.0))
    else:
        y = ops.relu(x)
    if max_value is not None:
        y = ops.clip(y, 0.0, float(max_value))
    if negative_slope != 0.0:
        neg = ops.multiply(ops.subtract(x, float(threshold)), float(negative_slope))
        y = ops.where(ops.less(x, threshold), neg, y)
    return y


def relu6(x):
    return ops.minimum(ops.relu(as_tensor(x, True)), 6.0)


def sigmoid(x):
    return ops.sigmoid(as_tensor(x, True))


def tanh(x):
    return ops.tanh(as_tensor(x, True))


def exponential(x):
    return ops.exp(as_tensor(x, True))


def softmax(x, axis: int = -1):
    """Softmax along ``axis``: the registered ``softmax`` op when present (readable IR, a
    fusable softmax+cross-entropy), else the max-shifted composition (no overflow)."""
    x = as_tensor(x, True)
    a = _axis(x, axis)
    if has_op("softmax"):
        return ops.apply("softmax", x, axis=a)
    e = ops.exp(ops.subtract(x, ops.max(x, axis=a, keepdims=True)))
    return ops.divide(e, ops.sum(e, axis=a, keepdims=True))


def log_softmax(x, axis: int = -1):
    x = as_tensor(x, True)
    a = _axis(x, axis)
    if has_op("log_softmax"):
        return ops.apply("log_softmax", x, axis=a)
    # x - max is <= 0 and the sum is >= 1, so the log never sees 0: finite for finite x.
    z = ops.subtract(x, ops.max(x, axis=a, keepdims=True))
    return ops.subtract(z, ops.log(ops.sum(ops.exp(z), axis=a, keepdims=True)))


def softplus(x):
    """``log(1 + e^x)`` as ``max(x, 0) + log1p(e^-|x|)``: never exponentiates a positive
    number. Both pieces select on the same ``x >= 0`` (as TensorFlow's logistic loss does)
    so the traced gradient is exact at 0 too (``relu``/``abs`` would give 0 there, not 1/2).
    """
    x = as_tensor(x, True)
    pos = ops.greater_equal(x, 0.0)
    zero = ops.multiply(x, 0.0)
    return ops.add(ops.where(pos, x, zero),
                   ops.log1p(ops.exp(ops.where(pos, ops.negative(x), x))))


def softsign(x):
    x = as_tensor(x, True)
    return ops.divide(x, ops.add(ops.abs(x), 1.0))


def elu(x, alpha: float = 1.0):
    x = as_tensor(x, True)
    # exp of min(x, 0): the branch not taken never overflows (no inf*0 NaN in gradients).
    neg = ops.multiply(ops.subtract(ops.exp(ops.minimum(x, 0.0)), 1.0), float(alpha))
    return ops.where(ops.greater(x, 0.0), x, neg)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x):
    return ops.multiply(elu(x, _SELU_ALPHA), _SELU_SCALE)


def hard_sigmoid(x):
    """Keras 3 form: ``relu6(x + 3) / 6`` (Keras 2 used ``0.2 * x + 0.5``)."""
    x = as_tensor(x, True)
    return ops.divide(ops.clip(ops.add(x, 3.0), 0.0, 6.0), 6.0)


def hard_silu(x):
    x = as_tensor(x, True)
    return ops.multiply(x, hard_sigmoid(x))


def leaky_relu(x, negative_slope: float = 0.2):
    x = as_tensor(x, True)
    return ops.where(ops.greater_equal(x, 0.0), x, ops.multiply(x, float(negative_slope)))


def gelu(x, approximate: bool = False):
    """Exact ``0.5 x (1 + erf(x / sqrt 2))`` by default (Keras 3); tanh form when asked."""
    x = as_tensor(x, True)
    if approximate:
        inner = ops.multiply(
            ops.add(x, ops.multiply(ops.multiply(ops.square(x), x), 0.044715)),
            math.sqrt(2.0 / math.pi))
        return ops.multiply(ops.multiply(x, 0.5), ops.add(ops.tanh(inner), 1.0))
    return ops.multiply(ops.multiply(x, 0.5),
                        ops.add(ops.erf(ops.multiply(x, 1.0 / math.sqrt(2.0))), 1.0))


def silu(x):
    x = as_tensor(x, True)
    return ops.multiply(x, ops.sigmoid(x))


swish = silu


def mish(x):
    x = as_tensor(x, True)
    return ops.multiply(x, ops.tanh(softplus(x)))


# --------------------------------------------------------------------------------------
# get / serialize / deserialize
# --------------------------------------------------------------------------------------

ALL_ACTIVATIONS: dict[str, Callable] = {
    "linear": linear, "relu": relu, "relu6": relu6, "sigmoid": sigmoid, "tanh": tanh,
    "softmax": softmax, "log_softmax": log_softmax, "softplus": softplus,
    "softsign": softsign, "elu": elu, "selu": selu, "hard_sigmoid": hard_sigmoid,
    "hard_silu": hard_silu, "hard_swish": hard_silu, "leaky_relu": leaky_relu,
    "gelu": gelu, "exponential": exponential, "silu": silu, "swish": silu, "mish": mish,
}


def get(identifier):
    """Keras ``activations.get``: None → linear; a name; a callable; a serialized dict."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        return lookup("activation", identifier, ALL_ACTIVATIONS)
    if isinstance(identifier, Mapping):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise errors.UnknownNameError(
        f"Could not interpret activation identifier {identifier!r}: expected a name "
        f"({', '.join(sorted(ALL_ACTIVATIONS))}), a callable or a config dict")


def serialize(activation) -> str:
    """The name Keras writes into layer configs (``"relu"``; aliases give their target's
    name: ``swish`` → ``"silu"``)."""
    if isinstance(activation, str):
        return get(activation).__name__
    name = getattr(activation, "__name__", None)
    if name is None:
        raise ValueError(f"Cannot serialize activation {activation!r}: it has no name")
    return name


def deserialize(config, custom_objects: Mapping | None = None):
    """Inverse of ``serialize``; also reads Keras 3's ``{"class_name": "function",
    "config": "relu", ...}`` dict form."""
    if isinstance(config, Mapping):
        name, inner = split_config("activation", config)
        if name in ("function", "builtin_function") and isinstance(inner, str):
            name = inner
        config = name
    if custom_objects and config in custom_objects:
        return custom_objects[config]
    return get(config)
