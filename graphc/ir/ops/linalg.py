"""``matmul``: batched matrix product with numpy semantics for rank >= 2 operands
(leading batch dims broadcast). A backend primitive (a contraction template)."""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.ir.dtypes import TensorType
from graphc.ir.registry import broadcast_shapes, def_op, same_dtype, unbroadcast
from graphc.ir.ops.elementwise import _bcast_partner


def _matmul_infer(types, attrs):
    a, b = types
    dt = same_dtype("matmul", types)
    if a.rank < 2 or b.rank < 2:
        raise ShapeError(f"matmul: operands must have rank >= 2, got {a} and {b}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: contraction dims differ: {a} @ {b} "
                         f"({a.shape[-1]} vs {b.shape[-2]})")
    batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    return TensorType(batch + (a.shape[-2], b.shape[-1]), dt)


def _swap_last(b, x):
    perm = tuple(range(x.rank - 2)) + (x.rank - 1, x.rank - 2)
    return b.transpose(x, perm=perm)


def _matmul_vjp(b, n, g):
    x, y = n.inputs
    gx = b.matmul(g[0], _swap_last(b, y))
    gy = b.matmul(_swap_last(b, x), g[0])
    return [unbroadcast(b, gx, x.shape), unbroadcast(b, gy, y.shape)]


def _matmul_sample(rng, dtype):
    m, k, n = (int(v) for v in rng.integers(1, 6, size=3))
    batch = tuple(int(v) for v in rng.integers(1, 4, size=rng.integers(0, 3)))
    # Either operand may carry fewer or size-1 batch dims (both broadcast directions, so
    # both VJP unbroadcasts are exercised).
    other = _bcast_partner(rng, batch)
    ba, bb = (batch, other) if rng.random() < 0.5 else (other, batch)
    return [rng.standard_normal(ba + (m, k)).astype(dtype),
            rng.standard_normal(bb + (k, n)).astype(dtype)], {}


def_op("matmul", arity=2, infer=_matmul_infer, ref=lambda a, b: np.matmul(a, b),
       vjp=_matmul_vjp, sample=_matmul_sample)
