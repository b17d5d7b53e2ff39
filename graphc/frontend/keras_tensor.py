"""``KerasTensor``: the symbolic tensor of model definition time.

It carries only a shape (batch dimension ``None``), a numpy-style dtype string and its
history — the layer that produced it, which call (node) of that layer, and which output —
from which ``Model(inputs, outputs)`` recovers the layer graph. No IR exists yet at this
point; models are traced into IR later, on ``graphc.ir.graph.Value``s.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

_name_counter = itertools.count()


class KerasHistory(NamedTuple):
    layer: object          # the producing Layer
    node_index: int        # which call of that layer (index into layer._inbound_nodes)
    tensor_index: int      # which output of that call

    @property
    def operation(self):   # Keras 3 spelling
        return self.layer


def standardize_dtype(dtype) -> str:
    """'float32' for None; numpy/graphc dtypes and names ('f32', np.float32) to numpy
    names; Keras DTypePolicy configs to their variable dtype."""
    if dtype is None:
        return "float32"
    if isinstance(dtype, dict):     # {"class_name": "DTypePolicy", "config": {"name": ...}}
        dtype = dtype.get("config", {}).get("name", "float32")
    name = getattr(dtype, "name", None)
    if isinstance(name, str) and name in ("float32", "float64", "int32", "int64", "uint32",
                                           "bool", "float16", "bfloat16", "uint8", "int8"):
        dtype = name
    if isinstance(dtype, str) and dtype in ("mixed_float16", "mixed_bfloat16"):
        dtype = "float32"   # graphc computes in float32; mixed policies keep f32 variables
    from graphc.ir.dtypes import DType
    return DType.of(dtype).np.name


class KerasTensor:
    """A symbolic tensor: ``shape`` (tuple, ``None`` for unknown dims), ``dtype``, ``name``."""

    def __init__(self, shape, dtype="float32", name: str | None = None, record_history=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = standardize_dtype(dtype)
        if name is None:
            n = next(_name_counter)
            name = "keras_tensor" if n == 0 else f"keras_tensor_{n}"
        self.name = name
        self._keras_history: KerasHistory | None = record_history

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def sparse(self) -> bool:
        return False

    def __repr__(self):
        return (f"<KerasTensor shape={self.shape}, dtype={self.dtype}, sparse=False, "
                f"name={self.name}>")

    def __array__(self, *a, **k):
        raise TypeError(f"KerasTensor {self.name!r} is symbolic (model-definition time) and "
                        f"has no value; call the model on data, or use graphc.ops in a layer")

    def __len__(self):
        raise TypeError(f"KerasTensor {self.name!r} has no length (shape {self.shape})")

    def __bool__(self):
        raise TypeError(f"KerasTensor {self.name!r} is symbolic: it has no truth value")

    __hash__ = object.__hash__

    # -- operator sugar: builds a small layer in the functional graph (Keras 3 ops on
    # KerasTensors), so ``x = x + shortcut`` works in functional models.
    def _op(self, name, other=None, reverse=False):
        from graphc.frontend.layers.core import _operator_layer
        return _operator_layer(name, self, other, reverse)

    def __add__(self, o): return self._op("add", o)
    def __radd__(self, o): return self._op("add", o, True)
    def __sub__(self, o): return self._op("subtract", o)
    def __rsub__(self, o): return self._op("subtract", o, True)
    def __mul__(self, o): return self._op("multiply", o)
    def __rmul__(self, o): return self._op("multiply", o, True)
    def __truediv__(self, o): return self._op("divide", o)
    def __rtruediv__(self, o): return self._op("divide", o, True)
    def __neg__(self): return self._op("negative")


def is_keras_tensor(x) -> bool:
    return isinstance(x, KerasTensor)


def reset_names():
    global _name_counter
    _name_counter = itertools.count()


def shape_str(shape) -> str:
    """``(None, 64)`` as Keras prints shapes."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
