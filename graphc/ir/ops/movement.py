"""Data movement ops: reshape, transpose, broadcast_to (more — slice, pad, concat — live in
``movement2``). All are backend primitives."""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.ir.dtypes import TensorType
from graphc.ir.registry import REQUIRED, def_op, unbroadcast
from graphc.ir.ops.elementwise import _rand_shape


def _reshape_infer(types, attrs):
    t, shape = types[0], attrs["shape"]
    if any(d < 0 for d in shape) or int(np.prod(shape)) != t.size:
        raise ShapeError(f"reshape: cannot reshape {t} ({t.size} elements) to {list(shape)}")
    return t.with_shape(shape)


def _reshape_sample(rng, dtype):
    shape = _rand_shape(rng)
    x = rng.standard_normal(shape).astype(dtype)
    flat = [x.size]
    if x.size % 2 == 0 and x.size:
        flat = [2, x.size // 2]
    return [x], {"shape": tuple(flat)}


def_op("reshape", arity=1, attrs={"shape": REQUIRED}, infer=_reshape_infer,
       ref=lambda x, shape: np.reshape(x, shape),
       vjp=lambda b, n, g: [b.reshape(g[0], shape=n.inputs[0].shape)],
       sample=_reshape_sample)


def _transpose_infer(types, attrs):
    t, perm = types[0], attrs["perm"]
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"transpose: perm {list(perm)} is not a permutation of rank {t.rank}")
    return t.with_shape([t.shape[p] for p in perm])


def _transpose_sample(rng, dtype):
    shape = _rand_shape(rng)
    return [rng.standard_normal(shape).astype(dtype)], {"perm": tuple(int(p) for p in rng.permutation(len(shape)))}


def_op("transpose", arity=1, attrs={"perm": REQUIRED}, infer=_transpose_infer,
       ref=lambda x, perm: np.transpose(x, perm),
       vjp=lambda b, n, g: [b.transpose(g[0], perm=tuple(int(i) for i in np.argsort(n.attrs["perm"])))],
       sample=_transpose_sample)


def _bcast_infer(types, attrs):
    t, shape = types[0], tuple(attrs["shape"])
    try:
        if np.broadcast_shapes(t.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ShapeError(f"broadcast_to: cannot broadcast {t} to {list(shape)}") from None
    return t.with_shape(shape)


def _bcast_sample(rng, dtype):
    target = _rand_shape(rng) or (3,)
    src = target[rng.integers(0, len(target) + 1):]
    src = tuple(1 if rng.random() < 0.4 else d for d in src)
    return [rng.standard_normal(src).astype(dtype)], {"shape": target}


def_op("broadcast_to", arity=1, attrs={"shape": REQUIRED}, infer=_bcast_infer,
       ref=lambda x, shape: np.broadcast_to(x, shape).copy(),
       vjp=lambda b, n, g: [unbroadcast(b, g[0], n.inputs[0].shape)],
       sample=_bcast_sample)
