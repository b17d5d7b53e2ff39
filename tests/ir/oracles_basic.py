"""Independent numpy oracles for the basic ops (elementwise, reductions, movement, matmul).

Each oracle takes the op's input arrays and normalized attributes, like ``OpDef.ref``, but is
written from the op's definition rather than from graphc: float math in float64 by explicit
formulas (sigmoid as 1/(1+e^-x), erf by its Taylor series, reductions by sequential
accumulation, matmul as a broadcast product summed over k), rounded to the output dtype
only at the end. ``ORACLES`` maps op name -> oracle; ``tests/ir/test_registry.py`` merges
it with ``tests/ir/oracles_nn.py``.
"""
from __future__ import annotations

import math

import numpy as np

# Dtype names as the IR text spells them (DType.value), mapped here on purpose rather than
# through graphc.ir.dtypes so a wrong mapping there would show up.
_NP = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64,
       "u32": np.uint32, "bool": np.bool_}


def _f(x):
    return np.asarray(x, dtype=np.float64)


def _unary(fn):
    """A float64 formula applied to x, rounded to x's dtype."""
    def oracle(x):
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return np.asarray(fn(_f(x))).astype(x.dtype)
    return oracle


def _binary(fn):
    def oracle(a, b):
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return np.asarray(fn(*np.broadcast_arrays(_f(a), _f(b)))).astype(a.dtype)
    return oracle


def _compare(fn):
    def oracle(a, b):
        return np.asarray(fn(*np.broadcast_arrays(_f(a), _f(b))), dtype=np.bool_)
    return oracle


def _erf(x):
    """erf by its Maclaurin series, exact to ~1e-7 absolute up to |x| = 5 (float64 loses
    digits to cancellation out there) and +-1 beyond (1 - erf(5) ~ 1.5e-12)."""
    x = _f(x)
    xc = np.clip(x, -5.0, 5.0)
    term = xc.copy()          # (-1)^n x^(2n+1) / n!
    total = xc.copy()         # sum of term / (2n+1)
    for n in range(1, 160):
        term = term * (-xc * xc) / n
        total = total + term / (2 * n + 1)
    return np.where(np.abs(x) > 5.0, np.sign(x), total * (2.0 / math.sqrt(math.pi)))


def _tanh(x):
    with np.errstate(over="ignore"):
        return 1.0 - 2.0 / (np.exp(2.0 * x) + 1.0)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _pow(a, b):
    # x^y = e^(y ln x) on the positive base the sampler draws; numpy for anything else.
    if np.all(a > 0):
        return np.exp(b * np.log(a))
    return np.power(a, b)


def _floor(x):
    return x - np.mod(x, 1.0)   # np.mod takes the divisor's sign: floor for negatives too


def _reduce(x, axes, keepdims, combine, finish=None):
    """Sequential reduction: move the reduced axes last, flatten them, fold left."""
    axes = tuple(axes)
    keep = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, keep + list(axes))
    flat = moved.reshape(tuple(x.shape[a] for a in keep) + (-1,))
    acc = flat[..., 0]
    for k in range(1, flat.shape[-1]):
        acc = combine(acc, flat[..., k])
    if finish is not None:
        acc = finish(acc, flat.shape[-1])
    if keepdims:
        acc = np.reshape(acc, tuple(1 if a in axes else d for a, d in enumerate(x.shape)))
    return np.asarray(acc)


def _reduce_sum(x, axes, keepdims):
    return _reduce(_f(x), axes, keepdims, lambda s, v: s + v).astype(x.dtype)


def _reduce_mean(x, axes, keepdims):
    return _reduce(_f(x), axes, keepdims, lambda s, v: s + v,
                   lambda s, n: s / n).astype(x.dtype)


def _reduce_max(x, axes, keepdims):
    return _reduce(_f(x), axes, keepdims, lambda m, v: np.where(v > m, v, m)).astype(x.dtype)


def _argmax(x, axis):
    moved = np.moveaxis(x, axis, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    out = np.empty(rows.shape[0], dtype=np.int64)
    for r, row in enumerate(rows):
        best = 0
        for k in range(1, len(row)):
            if row[k] > row[best]:   # strict: the first maximum wins
                best = k
        out[r] = best
    return out.reshape(moved.shape[:-1])


def _broadcast_to(x, shape):
    if x.ndim == 0:
        return np.full(shape, x, dtype=x.dtype)
    idx = np.indices(shape)           # idx[d][i...] = i_d
    lead = len(shape) - x.ndim        # x aligns with the trailing axes; size-1 axes repeat
    src = tuple(np.zeros_like(idx[lead + i]) if d == 1 else idx[lead + i]
                for i, d in enumerate(x.shape))
    return x[src]


def _reshape(x, shape):
    out = np.empty(shape, dtype=x.dtype)
    out.flat[:] = list(x.flat)    # row-major element order, written out
    return out


def _transpose(x, perm):
    letters = "abcdefghijklmnopqrstuvwxyz"[:x.ndim]
    return np.einsum(f"{letters}->{''.join(letters[p] for p in perm)}", x).copy()


def _matmul(a, b):
    prod = _f(a)[..., :, :, None] * _f(b)[..., None, :, :]   # (..., m, k, n)
    return prod.sum(axis=-2).astype(a.dtype)


def _select(c, a, b):
    c, a, b = np.broadcast_arrays(c, a, b)
    out = np.array(b)
    out[c] = a[c]
    return out


def _cast(x, dtype):
    return x.astype(_NP[dtype.value])


def _logical(fn):
    def oracle(*xs):
        ints = np.broadcast_arrays(*[np.asarray(x).astype(np.int64) for x in xs])
        return np.asarray(fn(*ints), dtype=np.bool_)
    return oracle


ORACLES = {
    "constant": lambda value: np.array(value, copy=True),
    "abs": _unary(lambda x: np.where(x < 0, -x, x)),
    "neg": _unary(lambda x: -1.0 * x),
    "exp": _unary(np.exp),
    "log": _unary(np.log),
    "log1p": _unary(np.log1p),
    "sqrt": _unary(lambda x: x ** 0.5),
    "tanh": _unary(_tanh),
    "sigmoid": _unary(_sigmoid),
    "sign": _unary(lambda x: (x > 0).astype(np.float64) - (x < 0).astype(np.float64)),
    "floor": _unary(_floor),
    "erf": _unary(_erf),
    "relu": _unary(lambda x: np.where(x > 0, x, 0.0)),
    "cast": _cast,
    "add": _binary(lambda a, b: a + b),
    "sub": _binary(lambda a, b: a - b),
    "mul": _binary(lambda a, b: a * b),
    "div": _binary(lambda a, b: a / b),
    "pow": _binary(_pow),
    "maximum": _binary(lambda a, b: np.where(a >= b, a, b)),
    "minimum": _binary(lambda a, b: np.where(a <= b, a, b)),
    "greater": _compare(lambda a, b: a > b),
    "greater_equal": _compare(lambda a, b: a >= b),
    "less": _compare(lambda a, b: a < b),
    "less_equal": _compare(lambda a, b: a <= b),
    "equal": _compare(lambda a, b: a == b),
    "not_equal": _compare(lambda a, b: a != b),
    "logical_and": _logical(lambda a, b: a + b == 2),
    "logical_or": _logical(lambda a, b: a + b >= 1),
    "logical_not": _logical(lambda a: a == 0),
    "select": _select,
    "reduce_sum": _reduce_sum,
    "reduce_mean": _reduce_mean,
    "reduce_max": _reduce_max,
    "argmax": _argmax,
    "reshape": _reshape,
    "transpose": _transpose,
    "broadcast_to": _broadcast_to,
    "matmul": _matmul,
}
