"""``graphc.ops``: tensor functions with Keras-ops names for layers, losses, metrics,
optimizers and ``Lambda`` layers.

Inside a trace they emit IR nodes (arguments may be graph ``Value``s, ``Variable``s, Python
numbers or small numpy arrays). Outside a trace, on numpy inputs, they run eagerly with the
same numpy semantics the interpreter uses — so ``graphc.losses.mse(y, p)`` works on arrays.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from graphc.ir.dtypes import DType
from graphc.ir.graph import Builder, Value, _builder_stack
from graphc.ir.registry import get_op, normalize_axes
from graphc.frontend.tracing import current_trace
from graphc.frontend.variables import Variable


def _is_symbolic(x) -> bool:
    return isinstance(x, (Value, Variable))


def _coerce(x, like: DType | None) -> np.ndarray:
    """A Python number or list takes the dtype of the tensors it meets (``x * 0.5`` stays
    f32 for an f32 ``x``); numpy arrays keep their own dtype."""
    arr = np.asarray(x)
    if isinstance(x, np.ndarray):
        return arr
    if like is not None and like != DType.bool and (
            arr.dtype.kind == like.np.kind or (like.is_float and arr.dtype.kind in "iub")):
        return arr.astype(like.np)
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    return arr


def _like(inputs, is_tensor) -> DType | None:
    """The dtype Python numbers adopt: the first non-bool tensor input's."""
    for x in inputs:
        if is_tensor(x):
            dt = dtype_of(x)
            if dt != DType.bool:
                return dt
    return None


def apply(op: str, *inputs, **attrs):
    """Emit ``op`` into the active graph, or evaluate it eagerly on numpy inputs."""
    if any(_is_symbolic(x) for x in inputs) or (_builder_stack and not inputs):
        if not _builder_stack:
            raise RuntimeError(f"graphc.ops.{op} on graph values outside a graph")
        b = _builder_stack[-1]
        like = _like(inputs, _is_symbolic)
        vals = []
        for x in inputs:
            if isinstance(x, Value):
                vals.append(x)
            elif isinstance(x, Variable):
                ctx = current_trace()
                if ctx is None:
                    raise RuntimeError(f"{x.path} used in a graph outside of a trace")
                vals.append(ctx.value_of(x))
            else:
                arr = _coerce(x, like)
                vals.append(b.const(arr, DType.of(arr.dtype)))
        return b.emit(op, vals, attrs)
    return _eager(op, inputs, attrs)


def _eager(op, inputs, attrs):
    from graphc.ir.dtypes import TensorType
    opdef = get_op(op)
    like = _like(inputs, lambda x: isinstance(x, np.ndarray))
    arrays = [_coerce(x, like) for x in inputs]
    attrs = opdef.normalize_attrs(attrs)
    types = opdef.infer_types([TensorType.of(a) for a in arrays], attrs)
    outs = opdef.run_ref(arrays, attrs)
    outs = [np.asarray(o).astype(t.dtype.np) for o, t in zip(outs, types)]
    return outs[0] if len(outs) == 1 else tuple(outs)


def shape(x) -> tuple[int, ...]:
    return tuple(x.shape)


def rank(x) -> int:
    return len(x.shape)


def dtype_of(x) -> DType:
    if isinstance(x, (Value, Variable)):
        return x.dtype
    return DType.of(np.asarray(x).dtype)


def _axes(x, axis) -> tuple[int, ...]:
    return normalize_axes("reduce", axis, rank(x))


# -- elementwise ------------------------------------------------------------------------
def add(x, y): return apply("add", x, y)
def subtract(x, y): return apply("sub", x, y)
def multiply(x, y): return apply("mul", x, y)
def divide(x, y): return apply("div", x, y)
def power(x, y): return apply("pow", x, y)
def maximum(x, y): return apply("maximum", x, y)
def minimum(x, y): return apply("minimum", x, y)
def negative(x): return apply("neg", x)
def exp(x): return apply("exp", x)
def log(x): return apply("log", x)
def log1p(x): return apply("log1p", x)
def sqrt(x): return apply("sqrt", x)
def abs(x): return apply("abs", x)  # noqa: A001
def sign(x): return apply("sign", x)
def floor(x): return apply("floor", x)
def tanh(x): return apply("tanh", x)
def sigmoid(x): return apply("sigmoid", x)
def relu(x): return apply("relu", x)
def erf(x): return apply("erf", x)
def square(x): return apply("mul", x, x)
def greater(x, y): return apply("greater", x, y)
def greater_equal(x, y): return apply("greater_equal", x, y)
def less(x, y): return apply("less", x, y)
def less_equal(x, y): return apply("less_equal", x, y)
def equal(x, y): return apply("equal", x, y)
def not_equal(x, y): return apply("not_equal", x, y)
def logical_and(x, y): return apply("logical_and", x, y)
def logical_or(x, y): return apply("logical_or", x, y)
def logical_not(x): return apply("logical_not", x)
def where(cond, x, y): return apply("select", cond, x, y)


def cast(x, dtype):
    dt = DType.of(dtype)
    if dtype_of(x) == dt:
        return x
    return apply("cast", x, dtype=dt)


def clip(x, lo, hi):
    return minimum(maximum(x, lo), hi)


# -- reductions -------------------------------------------------------------------------
def sum(x, axis=None, keepdims=False):  # noqa: A001
    return apply("reduce_sum", x, axes=_axes(x, axis), keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return apply("reduce_mean", x, axes=_axes(x, axis), keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return apply("reduce_max", x, axes=_axes(x, axis), keepdims=keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return negative(max(negative(x), axis, keepdims))


def argmax(x, axis=-1):
    return apply("argmax", x, axis=_axes(x, axis)[0])


# -- shapes -----------------------------------------------------------------------------
def reshape(x, new_shape: Sequence[int]):
    new_shape = list(new_shape)
    if -1 in new_shape:
        known = int(np.prod([d for d in new_shape if d != -1]))
        total = int(np.prod(shape(x)))
        new_shape[new_shape.index(-1)] = total // known if known else 0
    if tuple(new_shape) == shape(x):
        return x
    return apply("reshape", x, shape=tuple(new_shape))


def transpose(x, axes=None):
    perm = tuple(reversed(range(rank(x)))) if axes is None else tuple(a % rank(x) for a in axes)
    return apply("transpose", x, perm=perm)


def expand_dims(x, axis):
    s = list(shape(x))
    axis = axis % (len(s) + 1)
    s.insert(axis, 1)
    return reshape(x, s)


def squeeze(x, axis=None):
    s = shape(x)
    axes = [i for i, d in enumerate(s) if d == 1] if axis is None else list(_axes(x, axis))
    return reshape(x, [d for i, d in enumerate(s) if i not in axes])


def broadcast_to(x, new_shape):
    if shape(x) == tuple(new_shape):
        return x
    return apply("broadcast_to", x, shape=tuple(new_shape))


def matmul(x, y): return apply("matmul", x, y)
