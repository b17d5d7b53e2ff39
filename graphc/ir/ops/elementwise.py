"""Elementwise ops: unary math, broadcasting binary arithmetic, comparisons, select, cast,
and the ``constant`` op. All are backend primitives except the activations at the bottom,
which decompose into primitives (and carry direct VJPs so gradients stay cheap).
"""
from __future__ import annotations

import math

import numpy as np

from graphc.errors import DTypeError
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.registry import (NOT_DIFFERENTIABLE, REQUIRED, broadcast_shapes, def_op,
                                same_dtype, unbroadcast)

# ----------------------------------------------------------------------------- samplers

def _rand_shape(rng, max_rank=3, max_dim=5):
    return tuple(int(d) for d in rng.integers(1, max_dim + 1, size=rng.integers(0, max_rank + 1)))


def _bcast_partner(rng, shape):
    """A shape that broadcasts against ``shape`` (drop leading dims, set some to 1)."""
    s = list(shape[rng.integers(0, len(shape) + 1):]) if shape else []
    return tuple(1 if rng.random() < 0.3 else d for d in s)


def _unary_sampler(lo=-2.0, hi=2.0, avoid=None):
    def sample(rng, dtype):
        x = rng.uniform(lo, hi, size=_rand_shape(rng)).astype(dtype)
        if avoid is not None:  # keep finite-difference probes away from kinks
            x = np.where(np.abs(x - avoid) < 0.05, x + 0.1, x).astype(dtype)
        return [x], {}
    return sample


def _binary_sampler(lo=-2.0, hi=2.0, lo2=None, hi2=None):
    def sample(rng, dtype):
        s1 = _rand_shape(rng)
        s2 = _bcast_partner(rng, s1)
        if rng.random() < 0.5:
            s1, s2 = s2, s1
        a = rng.uniform(lo, hi, size=s1).astype(dtype)
        b = rng.uniform(lo if lo2 is None else lo2, hi if hi2 is None else hi2,
                        size=s2).astype(dtype)
        return [a, b], {}
    return sample

# ----------------------------------------------------------------------------- constant

def _const_infer(_, attrs):
    v = attrs["value"]
    return TensorType(v.shape, DType.of(v.dtype))


def_op("constant", arity=0, attrs={"value": REQUIRED}, infer=_const_infer,
       ref=lambda value: np.array(value), vjp=lambda b, node, g: [],
       sample=lambda rng, dt: ([], {"value": rng.standard_normal(_rand_shape(rng)).astype(dt)}),
       doc="A literal tensor (attribute ``value``).")

# ----------------------------------------------------------------------------- unary

def _same_type(types, attrs):
    if types[0].dtype == DType.bool:
        raise DTypeError(f"arithmetic on a bool tensor {types[0]}; cast it first")
    return types[0]


def _float_only(name):
    def infer(types, attrs):
        if not types[0].dtype.is_float:
            raise DTypeError(f"{name}: expected a float tensor, got {types[0]}")
        return types[0]
    return infer


def _unary(name, ref, vjp, sampler=None, float_only=True, doc=""):
    def_op(name, arity=1, infer=_float_only(name) if float_only else _same_type, ref=ref,
           vjp=vjp, sample=sampler or _unary_sampler(), doc=doc)


def _erf(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _sigmoid(x):
    # Stable both ways: exp of a non-positive number only.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


_unary("neg", np.negative, lambda b, n, g: [b.neg(g[0])], float_only=False)
_unary("exp", np.exp, lambda b, n, g: [b.mul(g[0], n.outputs[0])])
_unary("log", np.log, lambda b, n, g: [b.div(g[0], n.inputs[0])], _unary_sampler(0.1, 3.0))
_unary("log1p", np.log1p, lambda b, n, g: [b.div(g[0], b.add(n.inputs[0], 1.0))],
       _unary_sampler(-0.5, 3.0))
_unary("sqrt", np.sqrt, lambda b, n, g: [b.div(b.mul(g[0], 0.5), n.outputs[0])],
       _unary_sampler(0.1, 3.0))
_unary("tanh", np.tanh,
       lambda b, n, g: [b.mul(g[0], b.sub(1.0, b.mul(n.outputs[0], n.outputs[0])))])
_unary("sigmoid", _sigmoid,
       lambda b, n, g: [b.mul(g[0], b.mul(n.outputs[0], b.sub(1.0, n.outputs[0])))],
       _unary_sampler(-4, 4))
_unary("abs", np.abs, lambda b, n, g: [b.mul(g[0], b.sign(n.inputs[0]))],
       _unary_sampler(avoid=0.0), float_only=False)
_unary("sign", np.sign, NOT_DIFFERENTIABLE, float_only=False)
_unary("floor", np.floor, NOT_DIFFERENTIABLE)
_unary("erf", _erf,
       lambda b, n, g: [b.mul(g[0], b.mul(2 / math.sqrt(math.pi),
                                          b.exp(b.neg(b.mul(n.inputs[0], n.inputs[0])))))])


def _cast_infer(types, attrs):
    return types[0].with_dtype(attrs["dtype"])


def _cast_vjp(b, node, g):
    x = node.inputs[0]
    if not (x.dtype.is_float and node.outputs[0].dtype.is_float):
        return [None]
    return [b.cast(g[0], dtype=x.dtype)]


def _cast_sample(rng, dt):
    src = DType.of(dt)
    # Float targets never narrow (f64 -> f32 rounding would swamp float64 finite
    # differences); int and bool targets exercise the non-differentiable path.
    targets = [src, DType.f64, DType.i32, DType.i64, DType.bool]
    return ([rng.standard_normal(_rand_shape(rng)).astype(src.np) * 3],
            {"dtype": targets[int(rng.integers(0, len(targets)))]})


def_op("cast", arity=1, attrs={"dtype": REQUIRED}, infer=_cast_infer,
       ref=lambda x, dtype: x.astype(DType.of(dtype).np), vjp=_cast_vjp,
       sample=_cast_sample)

# ----------------------------------------------------------------------------- binary

def _binary_infer(name, float_only=False):
    def infer(types, attrs):
        dt = same_dtype(name, types)
        if dt == DType.bool or (float_only and not dt.is_float):
            raise DTypeError(f"{name}: expected {'float' if float_only else 'numeric'} "
                             f"inputs, got {', '.join(str(t) for t in types)}")
        return TensorType(broadcast_shapes(name, *(t.shape for t in types)), dt)
    return infer


def _binary(name, ref, vjp, sampler=None, doc="", float_only=False):
    def_op(name, arity=2, infer=_binary_infer(name, float_only), ref=ref, vjp=vjp,
           sample=sampler or _binary_sampler(), doc=doc)


def _ub(b, node, gs):
    """Unbroadcast per-input gradients to their input shapes."""
    return [None if g is None else unbroadcast(b, g, x.shape) for g, x in zip(gs, node.inputs)]


_binary("add", np.add, lambda b, n, g: _ub(b, n, [g[0], g[0]]))
_binary("sub", np.subtract, lambda b, n, g: _ub(b, n, [g[0], b.neg(g[0])]))
_binary("mul", np.multiply,
        lambda b, n, g: _ub(b, n, [b.mul(g[0], n.inputs[1]), b.mul(g[0], n.inputs[0])]))
_binary("div", np.divide,
        lambda b, n, g: _ub(b, n, [b.div(g[0], n.inputs[1]),
                                   b.neg(b.div(b.mul(g[0], n.outputs[0]), n.inputs[1]))]),
        _binary_sampler(-2, 2, 0.5, 2.0), float_only=True)


def _pow_vjp(b, n, g):
    x, y = n.inputs
    out = n.outputs[0]
    gx = b.mul(g[0], b.mul(y, b.pow(x, b.sub(y, 1.0))))
    gy = b.mul(g[0], b.mul(out, b.log(x)))
    return _ub(b, n, [gx, gy])


_binary("pow", np.power, _pow_vjp, _binary_sampler(0.2, 2.0, -2.0, 2.0), float_only=True)


def _minmax_vjp(pick_first):
    def vjp(b, n, g):
        x, y = n.inputs
        mask = pick_first(b, x, y)  # where the first operand wins (ties go to the first)
        zero = b.mul(g[0], 0.0)
        return _ub(b, n, [b.select(mask, g[0], zero), b.select(mask, zero, g[0])])
    return vjp


def _separated_sampler(rng, dtype):
    """Operands at least 0.05 apart everywhere, so max/min are differentiable there."""
    while True:
        [a, c], _ = _binary_sampler()(rng, dtype)
        gap = np.abs(np.subtract(*np.broadcast_arrays(a, c)))
        if not gap.size or gap.min() >= 0.05:
            return [a, c], {}


_binary("maximum", np.maximum, _minmax_vjp(lambda b, x, y: b.greater_equal(x, y)),
        _separated_sampler)
_binary("minimum", np.minimum, _minmax_vjp(lambda b, x, y: b.less_equal(x, y)),
        _separated_sampler)


def _cmp_infer(name):
    def infer(types, attrs):
        same_dtype(name, types)
        return TensorType(broadcast_shapes(name, *(t.shape for t in types)), DType.bool)
    return infer


for _name, _fn in [("greater", np.greater), ("greater_equal", np.greater_equal),
                   ("less", np.less), ("less_equal", np.less_equal),
                   ("equal", np.equal), ("not_equal", np.not_equal)]:
    def_op(_name, arity=2, infer=_cmp_infer(_name), ref=_fn, vjp=NOT_DIFFERENTIABLE,
           sample=_binary_sampler())


def _logic_infer(name):
    def infer(types, attrs):
        if any(t.dtype != DType.bool for t in types):
            raise DTypeError(f"{name}: expected bool inputs, got {[str(t) for t in types]}")
        return TensorType(broadcast_shapes(name, *(t.shape for t in types)), DType.bool)
    return infer


def _bool_sampler(n):
    def sample(rng, dtype):
        s = _rand_shape(rng)
        return [rng.random(s) < 0.5 for _ in range(n)], {}
    return sample


def_op("logical_and", arity=2, infer=_logic_infer("logical_and"), ref=np.logical_and,
       vjp=NOT_DIFFERENTIABLE, sample=_bool_sampler(2))
def_op("logical_or", arity=2, infer=_logic_infer("logical_or"), ref=np.logical_or,
       vjp=NOT_DIFFERENTIABLE, sample=_bool_sampler(2))
def_op("logical_not", arity=1, infer=_logic_infer("logical_not"), ref=np.logical_not,
       vjp=NOT_DIFFERENTIABLE, sample=_bool_sampler(1))


def _select_infer(types, attrs):
    c, a, b_ = types
    if c.dtype != DType.bool:
        raise DTypeError(f"select: condition must be bool, got {c}")
    dt = same_dtype("select", [a, b_])
    return TensorType(broadcast_shapes("select", c.shape, a.shape, b_.shape), dt)


def _select_vjp(b, n, g):
    c, x, y = n.inputs
    zero = b.mul(g[0], 0.0)
    return [None, unbroadcast(b, b.select(c, g[0], zero), x.shape),
            unbroadcast(b, b.select(c, zero, g[0]), y.shape)]


def _select_sample(rng, dtype):
    s = _rand_shape(rng)
    return [rng.random(_bcast_partner(rng, s)) < 0.5,
            rng.standard_normal(s).astype(dtype),
            rng.standard_normal(_bcast_partner(rng, s)).astype(dtype)], {}


def_op("select", arity=3, infer=_select_infer, ref=lambda c, a, b: np.where(c, a, b),
       vjp=_select_vjp, sample=_select_sample, doc="where(cond, a, b), broadcasting.")

# ----------------------------------------------------------------------------- activations
# High-level ops: they keep traced IR readable and have cheap direct VJPs; the
# decomposition pass rewrites them into the primitives above for the backends.

def _relu_vjp(b, n, g):
    # The mask reads the OUTPUT (relu(x) > 0 exactly when x > 0, NaN included): the
    # backward pass then needs only y, so the pre-activation is never materialized and
    # bias + relu fuse into the producing matmul/conv as one epilogue.
    return [b.select(b.greater(n.outputs[0], 0.0), g[0], b.mul(g[0], 0.0))]


def_op("relu", arity=1, infer=_float_only("relu"), ref=lambda x: np.maximum(x, 0).astype(x.dtype),
       vjp=_relu_vjp, primitive=False,
       decompose=lambda b, ins, attrs: b.maximum(ins[0], 0.0),
       sample=_unary_sampler(avoid=0.0))
