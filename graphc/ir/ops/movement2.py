"""Data movement ops that change extents: ``slice`` (positive steps), constant ``pad`` and
variadic ``concat``. All are backend primitives; their VJPs are built from one another
(slice <-> pad are adjoint; strided slices scatter back through a reshape/pad trick)."""
from __future__ import annotations

import numpy as np

from graphc.errors import DTypeError
from graphc.ir.dtypes import TensorType
from graphc.ir.graph import check
from graphc.ir.registry import REQUIRED, def_op
from graphc.ir.ops.elementwise import _rand_shape


def _ints(v, n, lo=None):
    return (isinstance(v, tuple) and len(v) == n and all(isinstance(i, int) for i in v)
            and (lo is None or all(i >= lo for i in v)))


# ----------------------------------------------------------------------------- slice

def _slice_strides(attrs, rank):
    s = attrs["strides"]
    return (1,) * rank if s is None else s


def _slice_infer(types, attrs):
    t = types[0]
    op = "slice"
    begin, end, strides = attrs["begin"], attrs["end"], attrs["strides"]
    check(_ints(begin, t.rank), op, f"begin must be {t.rank} integers for {t}, got {begin!r}")
    check(_ints(end, t.rank), op, f"end must be {t.rank} integers for {t}, got {end!r}")
    check(strides is None or _ints(strides, t.rank, 1), op,
          f"strides must be {t.rank} integers >= 1 (or none) for {t}, got {strides!r}")
    strides = _slice_strides(attrs, t.rank)
    out = []
    for ax, (b0, e0, s, d) in enumerate(zip(begin, end, strides, t.shape)):
        check(0 <= b0 <= e0 <= d, op, f"axis {ax}: expected 0 <= begin <= end <= {d}, "
              f"got begin={b0}, end={e0} (input {t})")
        out.append(-(-(e0 - b0) // s))
    return t.with_shape(out)


def _slice_ref(x, begin, end, strides=None):
    strides = (1,) * x.ndim if strides is None else strides
    return x[tuple(slice(b0, e0, s) for b0, e0, s in zip(begin, end, strides))].copy()


def _slice_vjp(b, n, g):
    """Scatter g back to x's shape: zeros except at begin + k*stride.

    A strided axis of length m is interleaved with zeros: reshape to [m, 1], pad the new
    axis to [m, s], merge to m*s, keep the first (m-1)*s + 1 (ends on the last taken
    element), then pad the rest of the axis. Only primitives (reshape, pad, slice) appear.
    """
    x = n.inputs[0]
    g = g[0]
    begin, end = n.attrs["begin"], n.attrs["end"]
    strides = _slice_strides(n.attrs, x.rank)
    if 0 in g.shape:  # nothing was taken: the gradient is all zeros
        return [b.broadcast_to(b.const(0, x.dtype), shape=x.shape)]
    m = g.shape
    spread = [ax for ax in range(x.rank) if strides[ax] > 1 and m[ax] > 1]
    if spread:
        inter, pads, merged = [], [], []
        for ax in range(x.rank):
            inter.append(m[ax])
            pads.append((0, 0))
            if ax in spread:
                inter.append(1)
                pads.append((0, strides[ax] - 1))
                merged.append(m[ax] * strides[ax])
            else:
                merged.append(m[ax])
        g = b.reshape(g, shape=tuple(inter))
        g = b.pad(g, pads=tuple(pads), value=0.0)
        g = b.reshape(g, shape=tuple(merged))
        keep = tuple((m[ax] - 1) * strides[ax] + 1 if ax in spread else m[ax]
                     for ax in range(x.rank))
        g = b.slice(g, begin=(0,) * x.rank, end=keep, strides=None)
    lens = g.shape
    pads = tuple((begin[ax], x.shape[ax] - begin[ax] - lens[ax]) for ax in range(x.rank))
    if any(p != (0, 0) for p in pads):
        g = b.pad(g, pads=pads, value=0.0)
    return [g]


def _slice_sample(rng, dtype):
    shape = _rand_shape(rng, max_rank=3, max_dim=6) or (4,)
    begin, end = [], []
    for d in shape:
        b0 = int(rng.integers(0, d))
        begin.append(b0)
        end.append(int(rng.integers(b0 + 1, d + 1)))
    strides = (None if rng.random() < 0.3
               else tuple(int(s) for s in rng.integers(1, 4, size=len(shape))))
    return ([rng.standard_normal(shape).astype(dtype)],
            {"begin": tuple(begin), "end": tuple(end), "strides": strides})


def_op("slice", arity=1, attrs={"begin": REQUIRED, "end": REQUIRED, "strides": None},
       infer=_slice_infer, ref=_slice_ref, vjp=_slice_vjp, sample=_slice_sample,
       doc="x[begin:end:strides] per axis; 0 <= begin <= end <= dim, steps >= 1 "
           "(strides none = all ones). Negative indices are resolved by the frontend.")

# ----------------------------------------------------------------------------- pad


def _pad_infer(types, attrs):
    t = types[0]
    pads = attrs["pads"]
    check(isinstance(pads, tuple) and len(pads) == t.rank
          and all(isinstance(p, tuple) and _ints(p, 2, 0) for p in pads),
          "pad", f"pads must be {t.rank} pairs (lo, hi) of integers >= 0 for {t}, got {pads!r}")
    check(isinstance(attrs["value"], (int, float, bool)), "pad",
          f"value must be a number, got {attrs['value']!r}")
    return t.with_shape(d + lo + hi for d, (lo, hi) in zip(t.shape, pads))


def _pad_ref(x, pads, value=0.0):
    if x.ndim == 0:  # np.pad rejects an empty pad_width
        return x.copy()
    return np.pad(x, pads, constant_values=np.asarray(value).astype(x.dtype))


def _pad_vjp(b, n, g):
    x = n.inputs[0]
    pads = n.attrs["pads"]
    return [b.slice(g[0], begin=tuple(lo for lo, _ in pads),
                    end=tuple(lo + d for (lo, _), d in zip(pads, x.shape)), strides=None)]


def _pad_sample(rng, dtype):
    shape = _rand_shape(rng, max_rank=3, max_dim=4)
    pads = tuple(tuple(int(v) for v in rng.integers(0, 3, size=2)) for _ in shape)
    return [rng.standard_normal(shape).astype(dtype)], {"pads": pads,
                                                        "value": float(rng.choice([0.0, 1.5]))}


def_op("pad", arity=1, attrs={"pads": REQUIRED, "value": 0.0}, infer=_pad_infer,
       ref=_pad_ref, vjp=_pad_vjp, sample=_pad_sample,
       doc="Constant padding: pads=((lo, hi), ...) per axis, lo/hi >= 0, filled with value.")

# ----------------------------------------------------------------------------- concat


def _concat_infer(types, attrs):
    op = "concat"
    check(len(types) >= 1, op, "expected at least one input, got none")
    ax = attrs["axis"]
    t0 = types[0]
    check(isinstance(ax, int) and 0 <= ax < t0.rank, op,
          f"axis {ax!r} out of range for rank {t0.rank} ({t0})")
    for i, t in enumerate(types[1:], 1):
        if t.dtype != t0.dtype:
            raise DTypeError(f"{op}: inputs must share one dtype; input 0 is {t0}, "
                             f"input {i} is {t}")
        check(t.rank == t0.rank and all(a == c for k, (a, c) in enumerate(zip(t.shape, t0.shape))
                                        if k != ax),
              op, f"input {i}: expected shape {list(t0.shape[:ax])} + [*] + "
                  f"{list(t0.shape[ax + 1:])} (axis {ax}), got {list(t.shape)}")
    shape = list(t0.shape)
    shape[ax] = sum(t.shape[ax] for t in types)
    return TensorType(shape, t0.dtype)


def _concat_vjp(b, n, g):
    ax = n.attrs["axis"]
    out = g[0].shape
    grads, off = [], 0
    for x in n.inputs:
        begin = tuple(off if k == ax else 0 for k in range(len(out)))
        end = tuple(off + x.shape[ax] if k == ax else d for k, d in enumerate(out))
        grads.append(b.slice(g[0], begin=begin, end=end, strides=None))
        off += x.shape[ax]
    return grads


def _concat_sample(rng, dtype):
    shape = list(_rand_shape(rng, max_rank=3, max_dim=4) or (3,))
    ax = int(rng.integers(0, len(shape)))
    xs = []
    for _ in range(int(rng.integers(1, 4))):
        shape[ax] = int(rng.integers(1, 4))
        xs.append(rng.standard_normal(shape).astype(dtype))
    return xs, {"axis": ax}


def_op("concat", arity=None, attrs={"axis": REQUIRED}, infer=_concat_infer,
       ref=lambda *xs, axis: np.concatenate(xs, axis=axis), vjp=_concat_vjp,
       sample=_concat_sample,
       doc="Concatenation of one or more same-dtype tensors along a non-negative axis.")
