"""Indexing primitives: ``gather`` (rows of a tensor picked by integer indices: embedding
lookup) and its adjoint ``scatter_add`` (rows added into a zero tensor at integer indices:
the embedding gradient). Each is the other's VJP; the indices carry no gradient.

Out-of-range indices (negative, or >= the size of the indexed axis) are defined, not
errors, because a compiled kernel cannot raise in the middle of a step: ``gather`` gives
zeros for them (what TF does on GPU, and what ``one_hot`` does for an out-of-range class)
and ``scatter_add`` drops them. Zero-fill rather than clamping keeps the pair exact
adjoints and makes a bad index visible as a zero embedding instead of silently reusing
the last row. Negative indices do NOT wrap around as in numpy.
"""
from __future__ import annotations

import numpy as np

from graphc.errors import DTypeError
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import check
from graphc.ir.registry import REQUIRED, def_op
from graphc.ir.ops.elementwise import _rand_shape


def _check_indices(op, t):
    if not t.dtype.is_int:
        raise DTypeError(f"{op}: indices must be an integer tensor (i32 or i64), got {t}")


def _check_axis(op, axis, rank, what):
    check(isinstance(axis, int) and not isinstance(axis, bool) and 0 <= axis < rank, op,
          f"axis {axis!r} out of range [0, {rank}) for {what}")


def _gathered_shape(shape, idx_shape, axis):
    return tuple(shape[:axis]) + tuple(idx_shape) + tuple(shape[axis + 1:])


# ----------------------------------------------------------------------------- numpy

def _valid(indices, n):
    idx = np.asarray(indices).astype(np.int64)
    return idx, (idx >= 0) & (idx < n)


def _gather_ref(params, indices, axis=0):
    n = params.shape[axis]
    idx, ok = _valid(indices, n)
    out_shape = _gathered_shape(params.shape, idx.shape, axis)
    if n == 0:
        return np.zeros(out_shape, params.dtype)
    out = np.take(params, np.where(ok, idx, 0), axis=axis)
    mask = ok.reshape((1,) * axis + idx.shape + (1,) * (params.ndim - axis - 1))
    return np.where(mask, out, np.zeros((), params.dtype)).astype(params.dtype)


def _scatter_add_ref(updates, indices, shape, axis=0):
    shape = tuple(shape)
    out = np.zeros(shape, updates.dtype)
    idx, ok = _valid(indices, shape[axis])
    # Flatten the index dims into one axis so a single np.add.at does the scatter;
    # np.add.at (unlike fancy-index +=) accumulates duplicate indices.
    u = updates.reshape(shape[:axis] + (idx.size,) + shape[axis + 1:])
    keep = ok.reshape(-1)
    where = (slice(None),) * axis + (idx.reshape(-1)[keep],)
    np.add.at(out, where, np.compress(keep, u, axis=axis))
    return out


# ----------------------------------------------------------------------------- shape rules

def _gather_infer(types, attrs):
    op = "gather"
    params, indices = types
    _check_indices(op, indices)
    if params.dtype == DType.bool:
        raise DTypeError(f"{op}: params must be numeric, got {params}")
    _check_axis(op, attrs["axis"], params.rank, f"params {params}")
    return TensorType(_gathered_shape(params.shape, indices.shape, attrs["axis"]),
                      params.dtype)


def _scatter_add_infer(types, attrs):
    op = "scatter_add"
    updates, indices = types
    _check_indices(op, indices)
    if updates.dtype == DType.bool:
        raise DTypeError(f"{op}: updates must be numeric, got {updates}")
    shape, axis = attrs["shape"], attrs["axis"]
    check(isinstance(shape, tuple) and len(shape) >= 1
          and all(isinstance(d, int) and d >= 0 for d in shape), op,
          f"shape must be a non-empty tuple of integers >= 0, got {shape!r}")
    _check_axis(op, axis, len(shape), f"shape {list(shape)}")
    want = _gathered_shape(shape, indices.shape, axis)
    check(updates.shape == want, op,
          f"updates: expected shape {list(want)} (shape {list(shape)} with axis {axis} "
          f"replaced by indices shape {list(indices.shape)}), got {list(updates.shape)}")
    return TensorType(shape, updates.dtype)


# ----------------------------------------------------------------------------- VJPs

def _gather_vjp(b, n, g):
    params, indices = n.inputs
    return [b.scatter_add(g[0], indices, shape=params.shape, axis=n.attrs["axis"]), None]


def _scatter_add_vjp(b, n, g):
    _, indices = n.inputs
    return [b.gather(g[0], indices, axis=n.attrs["axis"]), None]


# ----------------------------------------------------------------------------- samplers

def _indices(rng, n, max_rank=2):
    """Indices of a random small shape, mostly in [0, n) with duplicates, and some out of
    range on both sides (they must give zero rows / be dropped)."""
    shape = _rand_shape(rng, max_rank=max_rank, max_dim=4)
    idx = rng.integers(-2, n + 2, size=shape)
    return idx.astype(np.int64 if rng.random() < 0.5 else np.int32)


def _gather_sample(rng, dtype):
    shape = _rand_shape(rng, max_rank=3, max_dim=5) or (4,)
    axis = int(rng.integers(0, len(shape)))
    params = rng.standard_normal(shape).astype(dtype)
    return [params, _indices(rng, shape[axis])], {"axis": axis}


def _scatter_add_sample(rng, dtype):
    shape = _rand_shape(rng, max_rank=3, max_dim=5) or (4,)
    axis = int(rng.integers(0, len(shape)))
    idx = _indices(rng, shape[axis])
    updates = rng.standard_normal(_gathered_shape(shape, idx.shape, axis)).astype(dtype)
    return [updates, idx], {"shape": shape, "axis": axis}


def_op("gather", arity=2, attrs={"axis": 0}, infer=_gather_infer, ref=_gather_ref,
       vjp=_gather_vjp, sample=_gather_sample,
       doc="(params, indices) -> params.shape[:axis] + indices.shape + params.shape[axis+1:]:"
           " slices of params along axis picked by integer indices (numpy take). An index "
           "outside [0, params.shape[axis]) — negatives included — gives zeros.")
def_op("scatter_add", arity=2, attrs={"shape": REQUIRED, "axis": 0},
       infer=_scatter_add_infer, ref=_scatter_add_ref, vjp=_scatter_add_vjp,
       sample=_scatter_add_sample,
       doc="(updates, indices) -> zeros(shape) with each slice of updates added at its "
           "index along axis; duplicate indices accumulate, out-of-range ones are dropped. "
           "The adjoint of gather.")
