"""Reductions over axes (sum, max, mean) and argmax. ``axes`` are non-negative and sorted
(the builder-facing API in ``graphc.frontend.ops`` normalizes negative axes)."""
from __future__ import annotations

import numpy as np

from graphc.errors import DTypeError, ShapeError
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.registry import NOT_DIFFERENTIABLE, REQUIRED, def_op
from graphc.ir.ops.elementwise import _rand_shape


def _check_axes(op, axes, rank):
    if any(not (0 <= a < rank) for a in axes) or list(axes) != sorted(set(axes)):
        raise ShapeError(f"{op}: axes {list(axes)} must be sorted, unique and in [0, {rank})")


def _reduced_shape(shape, axes, keepdims):
    return tuple((1 if keepdims else None) if i in axes else d
                 for i, d in enumerate(shape) if keepdims or i not in axes)


def _reduce_infer(op):
    def infer(types, attrs):
        t = types[0]
        _check_axes(op, attrs["axes"], t.rank)
        return TensorType(_reduced_shape(t.shape, attrs["axes"], attrs["keepdims"]), t.dtype)
    return infer


def _restore(b, g, x_shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input shape."""
    if not keepdims:
        g = b.reshape(g, shape=_reduced_shape(x_shape, axes, True))
    return g


def _sum_vjp(b, n, g):
    x = n.inputs[0]
    gk = _restore(b, g[0], x.shape, n.attrs["axes"], n.attrs["keepdims"])
    return [b.broadcast_to(gk, shape=x.shape)]


def _max_vjp(b, n, g):
    # Gradient flows to every position equal to the max, split evenly among ties.
    x, y = n.inputs[0], n.outputs[0]
    axes, kd = n.attrs["axes"], n.attrs["keepdims"]
    yk = _restore(b, y, x.shape, axes, kd)
    mask = b.cast(b.equal(x, yk), dtype=x.dtype)
    count = b.reduce_sum(mask, axes=axes, keepdims=True)
    gk = _restore(b, g[0], x.shape, axes, kd)
    return [b.mul(mask, b.div(gk, count))]


def _red_sample(rng, dtype):
    shape = _rand_shape(rng, max_rank=3)
    if not shape:
        shape = (3,)
    axes = tuple(sorted(set(int(a) for a in rng.integers(0, len(shape), size=rng.integers(1, len(shape) + 1)))))
    return [rng.standard_normal(shape).astype(dtype)], {"axes": axes, "keepdims": bool(rng.random() < 0.5)}


_RED_ATTRS = {"axes": REQUIRED, "keepdims": False}

def_op("reduce_sum", arity=1, attrs=_RED_ATTRS, infer=_reduce_infer("reduce_sum"),
       ref=lambda x, axes, keepdims: np.sum(x, axis=axes, keepdims=keepdims).astype(x.dtype),
       vjp=_sum_vjp, sample=_red_sample)
def_op("reduce_max", arity=1, attrs=_RED_ATTRS, infer=_reduce_infer("reduce_max"),
       ref=lambda x, axes, keepdims: np.max(x, axis=axes, keepdims=keepdims),
       vjp=_max_vjp, sample=_red_sample)


def _mean_decompose(b, ins, attrs):
    x = ins[0]
    count = int(np.prod([x.shape[a] for a in attrs["axes"]])) if attrs["axes"] else 1
    return b.mul(b.reduce_sum(x, **attrs), 1.0 / count)


def _mean_vjp(b, n, g):
    x = n.inputs[0]
    count = int(np.prod([x.shape[a] for a in n.attrs["axes"]])) if n.attrs["axes"] else 1
    return [b.mul(_sum_vjp(b, n, g)[0], 1.0 / count)]


def_op("reduce_mean", arity=1, attrs=_RED_ATTRS, infer=_reduce_infer("reduce_mean"),
       ref=lambda x, axes, keepdims: np.mean(x, axis=axes, keepdims=keepdims).astype(x.dtype),
       vjp=_mean_vjp, primitive=False, decompose=_mean_decompose, sample=_red_sample)


def _argmax_infer(types, attrs):
    t = types[0]
    ax = attrs["axis"]
    if not 0 <= ax < t.rank:
        raise ShapeError(f"argmax: axis {ax} out of range for {t}")
    return TensorType(tuple(d for i, d in enumerate(t.shape) if i != ax), DType.i64)


def _argmax_sample(rng, dtype):
    shape = _rand_shape(rng) or (4,)
    return [rng.standard_normal(shape).astype(dtype)], {"axis": int(rng.integers(0, len(shape)))}


def_op("argmax", arity=1, attrs={"axis": REQUIRED}, infer=_argmax_infer,
       ref=lambda x, axis: np.argmax(x, axis=axis).astype(np.int64), vjp=NOT_DIFFERENTIABLE,
       sample=_argmax_sample, doc="Index of the first maximum along ``axis`` (i64).")
