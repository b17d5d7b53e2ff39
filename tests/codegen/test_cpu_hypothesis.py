"""Property tests: the cpu target against the reference interpreter over hypothesis-drawn
shapes and attributes (not the registry's samplers).

Shapes put the sizes vector loops and register blocks get wrong — 1, 3, 17, 33, 65, 127 —
on the outermost and innermost axes; binary ops broadcast both ways (scalars, size-1 dims,
missing leading dims); slices are strided; conv draws strides 1-3, dilation 1-2, explicit
asymmetric padding and groups 1-2; pooling draws windows, strides and padding and puts ties
in the windows (the cpu kernels claim the reference's first-max rule exactly); gather and
scatter_add get duplicate and out-of-range indices. Random multi-step programs (with
intermediate values among the outputs) and train-step-shaped update programs compiled with
``inplace_state=True`` exercise fusion and the memory planner together. Tests marked
``slow`` use shapes that reach GEMM K/M blocking, thread splits and backprop-filter batch
chunking. Every example is one small graph, compiled for cpu and compared with
``graphc.ir.interpreter.interpret``:

- exact (bit for bit, NaN == NaN) for integer, bool, random, max/argmax, pooling and
  data-movement results and the correctly rounded IEEE ops;
- float math: ``|cpu - ref| <= atol + rtol * m`` with rtol = atol = 1e-5 (float32) or 1e-12
  (float64), where ``m`` is ``|ref|`` for elementwise ops and, for sums and contractions,
  the same op applied to the absolute values of its operands (the textbook bound on the
  rounding of a dot product; a plain ``rtol * |ref|`` fails on legitimate cancellation).

Array contents come from a numpy generator seeded by a hypothesis-drawn integer, so a
falsifying example prints everything needed to rebuild it. Each test draws few examples
(a compile is ~20-100 ms): the whole file should stay well under a minute;
``GRAPHC_HYPOTHESIS_SCALE=10`` multiplies the example counts for a longer hunt.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from graphc.ir.dtypes import DType, TensorType  # noqa: E402
from graphc.ir.graph import Graph  # noqa: E402
from graphc.ir.interpreter import interpret  # noqa: E402
from graphc.ir.registry import get_op  # noqa: E402
from graphc.passes.autodiff import gradients  # noqa: E402
from graphc.runtime.backends import get_backend  # noqa: E402

CPU = get_backend("cpu")

EDGE = (1, 3, 17, 33, 65, 127)
SEEDS = st.integers(0, 2 ** 32 - 1)
FLOATS = st.sampled_from([np.float32, np.float64])


# GRAPHC_HYPOTHESIS_SCALE=10 multiplies every test's example count (a longer bug hunt).
_SCALE = float(os.environ.get("GRAPHC_HYPOTHESIS_SCALE", "1"))


def _settings(n=15):
    return settings(max_examples=max(1, int(n * _SCALE)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ----------------------------------------------------------------------------- checking

def _tol(dtype):
    return (1e-5, 1e-5) if np.dtype(dtype) == np.float32 else (1e-12, 1e-12)


def _describe(arrays):
    return ", ".join(f"{a.dtype}{list(a.shape)}" for a in arrays)


def _assert_match(got, want, *, exact, mag=None, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, reference {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, reference {want.dtype}"
    if exact or want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    rtol, atol = _tol(want.dtype)
    w = want.astype(np.float64)
    h = got.astype(np.float64)
    m = np.abs(w) if mag is None else np.abs(np.asarray(mag, np.float64))
    with np.errstate(invalid="ignore"):
        err = np.abs(h - w)
        ok = (err <= atol + rtol * m) | (np.isnan(h) & np.isnan(w)) | (h == w)
    if not ok.all():
        bad = np.argwhere(~ok)
        k = tuple(bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} of {ok.size} elements differ beyond atol {atol} + rtol "
            f"{rtol} * magnitude; first at {k}: cpu {h[k]!r}, reference {w[k]!r}, "
            f"magnitude {m[k]!r}")


def _graph(arrays, build, name="h"):
    """A graph with one input per array; ``build(b, *inputs)`` returns its outputs."""
    g = Graph(name)
    xs = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    outs = build(g.builder, *xs)
    g.set_outputs(list(outs) if isinstance(outs, (list, tuple)) else [outs])
    return g


def _run(g, arrays):
    """(cpu results, reference results); the cpu step reuses its output arrays: copy."""
    got = [np.array(o, copy=True) for o in CPU.compile(g)(arrays, [])]
    want = interpret(g, arrays)
    assert len(got) == len(want)
    return got, want


def _check(arrays, build, *, exact, mags=None, what=""):
    g = _graph(arrays, build)
    got, want = _run(g, arrays)
    mags = mags or [None] * len(want)
    what = f"{what} [inputs {_describe(arrays)}]"
    for k, (h, w, m) in enumerate(zip(got, want, mags)):
        _assert_match(h, w, exact=exact, mag=m, what=f"{what} output {k}")
    return got, want


def _ref(op, arrays, **attrs):
    opdef = get_op(op)
    return opdef.run_ref([np.asarray(a) for a in arrays], opdef.normalize_attrs(attrs))[0]


# ----------------------------------------------------------------------------- coverage

# Primitive -> the test(s) below that draw it (constant: every test that bakes a scalar
# or a tensor into the code, e.g. test_binary_float_broadcasting's constant operand).
COVERED = {
    "abs": "unary", "neg": "unary", "sign": "unary", "floor": "unary", "sqrt": "unary",
    "exp": "unary", "log": "unary", "log1p": "unary", "tanh": "unary", "sigmoid": "unary",
    "erf": "unary", "add": "binary", "sub": "binary", "mul": "binary", "div": "binary",
    "pow": "binary", "maximum": "binary", "minimum": "binary", "greater": "compare",
    "greater_equal": "compare", "less": "compare", "less_equal": "compare",
    "equal": "compare", "not_equal": "compare", "logical_and": "logical",
    "logical_or": "logical", "logical_not": "logical", "select": "select", "cast": "cast",
    "constant": "binary", "reduce_sum": "reductions", "reduce_max": "reductions",
    "argmax": "argmax", "transpose": "transpose", "reshape": "reshape", "slice": "slice",
    "pad": "pad", "concat": "concat", "broadcast_to": "broadcast_to", "matmul": "matmul",
    "conv2d": "conv2d", "conv2d_backprop_input": "conv2d_gradient_ops",
    "conv2d_backprop_filter": "conv2d_gradient_ops", "max_pool2d": "pooling_forward",
    "avg_pool2d": "pooling_forward", "max_pool2d_grad": "pooling_gradient_ops",
    "max_pool2d_gather": "pooling_gradient_ops", "avg_pool2d_grad": "pooling_gradient_ops",
    "gather": "gather", "scatter_add": "scatter_add", "random_uniform": "random_uniform",
}


def test_every_primitive_has_a_property_test():
    from graphc.ir.registry import all_ops
    prims = {n for n, op in all_ops().items() if op.primitive}
    assert not prims - set(COVERED), (
        f"primitives without a hypothesis strategy here: {sorted(prims - set(COVERED))}")
    assert not set(COVERED) - prims, f"not primitives any more: {sorted(set(COVERED) - prims)}"


# ----------------------------------------------------------------------------- strategies

def _dim(edge_weight=True):
    return st.one_of(st.sampled_from(EDGE), st.integers(1, 4)) if edge_weight \
        else st.integers(1, 3)


@st.composite
def shapes(draw, min_rank=0, max_rank=3, max_size=70_000):
    """Outermost and innermost dims from EDGE (or small); middle dims small."""
    rank = draw(st.integers(min_rank, max_rank))
    dims = [draw(_dim(i in (0, rank - 1))) for i in range(rank)]
    assume(math.prod(dims) <= max_size)
    return tuple(dims)


@st.composite
def broadcast_shapes(draw, n=2, min_rank=0, max_rank=4):
    """n shapes that broadcast together: each drops some leading dims of a common shape and
    sets some dims to 1 (independently, so (n, 1) against (1, m) happens)."""
    full = draw(shapes(min_rank=min_rank, max_rank=max_rank, max_size=40_000))
    out = []
    for _ in range(n):
        drop = draw(st.integers(0, len(full)))
        out.append(tuple(1 if draw(st.integers(0, 3)) == 0 else d for d in full[drop:]))
    return out


def _floats(rng, shape, dtype, lo=-3.0, hi=3.0):
    return rng.uniform(lo, hi, shape).astype(dtype)


def _grid(rng, shape, dtype, k=4):
    """Values from a small grid: comparisons tie, maxima repeat."""
    return (rng.integers(-k, k + 1, shape) * 0.5).astype(dtype)


def _ints(rng, shape, dtype, full=False):
    if np.dtype(dtype) == np.bool_:
        return rng.random(shape) < 0.5
    info = np.iinfo(dtype)
    if full:
        return rng.integers(info.min, info.max, shape, dtype=np.int64, endpoint=True
                            ).astype(dtype)
    lo = 0 if info.min == 0 else -50
    return rng.integers(lo, 50, shape).astype(dtype)


def _noncontiguous(a):
    """The same values as a non-contiguous view (the step must gather them)."""
    if a.ndim == 0 or a.size == 0:
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


# ----------------------------------------------------------------------------- elementwise

# op -> (lo, hi, exact)
UNARY = {"neg": (-3, 3, True), "abs": (-3, 3, True), "sign": (-3, 3, True),
         "floor": (-3, 3, True), "sqrt": (0, 9, True), "relu": (-3, 3, True),
         "exp": (-5, 5, False), "log": (0.01, 9, False), "log1p": (-0.9, 9, False),
         "tanh": (-6, 6, False), "sigmoid": (-30, 30, False), "erf": (-3, 3, False)}


@_settings(25)
@given(op=st.sampled_from(sorted(UNARY)), shape=shapes(max_rank=4), dtype=FLOATS, seed=SEEDS)
def test_unary_float(op, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    lo, hi, exact = UNARY[op]
    x = _floats(rng, shape, dtype, lo, hi)
    if x.size and lo <= 0 <= hi:
        x.flat[0] = 0.0
    # The op alone and inlined into a consumer (squared).
    _check([x], lambda b, x: [y := b.emit(op, [x]), b.mul(y, y)], exact=exact,
           what=f"{op} {dtype.__name__}{list(shape)}")


@_settings(12)
@given(op=st.sampled_from(["neg", "abs", "sign"]), shape=shapes(min_rank=1),
       dtype=st.sampled_from([np.int32, np.int64]), seed=SEEDS)
def test_unary_integer(op, shape, dtype, seed):
    x = _ints(np.random.default_rng(seed), shape, dtype, full=True)
    _check([x], lambda b, x: b.emit(op, [x]), exact=True, what=f"{op} {list(shape)}")


# op -> exact (one correctly rounded IEEE operation, or a selection)
BINARY_FLOAT = {"add": True, "sub": True, "mul": True, "div": True, "maximum": True,
                "minimum": True, "pow": False}
COMPARE = ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"]


@_settings(25)
@given(op=st.sampled_from(sorted(BINARY_FLOAT)), sh=broadcast_shapes(), dtype=FLOATS,
       seed=SEEDS, strided=st.booleans(), const=st.sampled_from([None, 0, 1]))
def test_binary_float_broadcasting(op, sh, dtype, seed, strided, const):
    rng = np.random.default_rng(seed)
    if op == "pow":
        a, c = _floats(rng, sh[0], dtype, 0.2, 2.0), _floats(rng, sh[1], dtype, -2, 2)
    elif op == "div":
        a, c = _floats(rng, sh[0], dtype), _floats(rng, sh[1], dtype, 0.5, 2)
    else:
        a, c = _floats(rng, sh[0], dtype), _floats(rng, sh[1], dtype)
    if op in ("maximum", "minimum") and a.size and c.size:
        a.flat[0] = c.flat[0]           # a tie
    if const is not None:
        # One operand is a constant tensor baked into the code (the other stays an input).
        k, other = (a, c) if const == 0 else (c, a)
        ins = [_noncontiguous(other) if strided else other]

        def build(b, x):
            kv = b.const(k, DType.of(k.dtype))
            r = b.emit(op, [kv, x] if const == 0 else [x, kv])
            return [r, b.mul(r, r)]
        _check(ins, build, exact=BINARY_FLOAT[op], what=f"{op} {sh} constant operand {const}")
        return
    ins = [_noncontiguous(a), _noncontiguous(c)] if strided else [a, c]
    # The op alone and inlined into a consumer (squared: one more rounding, same on both).
    _check(ins, lambda b, x, y: [r := b.emit(op, [x, y]), b.mul(r, r)],
           exact=BINARY_FLOAT[op], what=f"{op} {sh} strided={strided}")


@_settings(20)
@given(op=st.sampled_from(COMPARE + ["maximum", "minimum", "add", "sub", "mul"]),
       sh=broadcast_shapes(), dtype=st.sampled_from([np.float32, np.float64, np.int32,
                                                     np.int64, np.uint32]), seed=SEEDS)
def test_compare_and_integer_binary(op, sh, dtype, seed):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        a, c = _grid(rng, sh[0], dtype), _grid(rng, sh[1], dtype)   # ties happen
    else:
        full = op in ("add", "sub", "mul")          # wrap-around like numpy
        a, c = _ints(rng, sh[0], dtype, full), _ints(rng, sh[1], dtype, full)
    if op in ("add", "sub", "mul") and np.dtype(dtype).kind == "f":
        return                                      # covered by the float test
    _check([a, c], lambda b, x, y: b.emit(op, [x, y]), exact=True, what=f"{op} {dtype} {sh}")


@_settings(12)
@given(op=st.sampled_from(["logical_and", "logical_or", "logical_not"]),
       sh=broadcast_shapes(), seed=SEEDS)
def test_logical(op, sh, seed):
    rng = np.random.default_rng(seed)
    if op == "logical_not":
        a = rng.random(sh[0]) < 0.5
        _check([a], lambda b, x: b.logical_not(x), exact=True)
    else:
        a, c = rng.random(sh[0]) < 0.5, rng.random(sh[1]) < 0.5
        # And consumed by another logical op: bool values inside a fused loop.
        _check([a, c], lambda b, x, y: [r := b.emit(op, [x, y]), b.logical_not(r)],
               exact=True, what=f"{op} {sh}")


@_settings(20)
@given(sh=broadcast_shapes(n=3), dtype=st.sampled_from([np.float32, np.float64, np.int32,
                                                        np.int64]), seed=SEEDS,
       from_compare=st.booleans())
def test_select_broadcasting(sh, dtype, seed, from_compare):
    rng = np.random.default_rng(seed)
    gen = (lambda s: _floats(rng, s, dtype)) if np.dtype(dtype).kind == "f" \
        else (lambda s: _ints(rng, s, dtype))
    a, c = gen(sh[1]), gen(sh[2])
    if from_compare:
        # The condition computed in the same kernel (the relu-gradient pattern).
        z = gen(sh[0])
        _check([z, a, c], lambda b, z, x, y: b.select(b.greater(z, b.const(0, z.dtype)), x, y),
               exact=True, what=f"select(z > 0) {sh}")
    else:
        cond = rng.random(sh[0]) < 0.5
        _check([cond, a, c], lambda b, k, x, y: b.select(k, x, y), exact=True,
               what=f"select {sh}")


CAST_DTYPES = [DType.f32, DType.f64, DType.i32, DType.i64, DType.u32, DType.bool]


@_settings(25)
@given(src=st.sampled_from(CAST_DTYPES), dst=st.sampled_from(CAST_DTYPES),
       shape=shapes(min_rank=1), seed=SEEDS)
def test_cast(src, dst, shape, seed):
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    if src.is_float:
        # Out-of-range float -> int is undefined (C and numpy): stay in range; never a
        # negative float to u32.
        lo = 0.0 if dst == DType.u32 else -2e3
        v = rng.uniform(lo, 2e3, n)
        v[rng.random(n) < 0.2] = 0.0
        v[rng.random(n) < 0.1] = -0.0 if lo < 0 else 0.5
        x = v.astype(src.np).reshape(shape)
    else:
        x = _ints(rng, shape, src.np, full=True)
    _check([x], lambda b, x: b.cast(x, dtype=dst), exact=True, what=f"cast {src} -> {dst}")


# ----------------------------------------------------------------------------- reductions

@st.composite
def reduce_case(draw):
    shape = draw(shapes(min_rank=1, max_rank=4))
    axes = tuple(sorted(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    return shape, axes, draw(st.booleans())


@_settings(25)
@given(op=st.sampled_from(["reduce_sum", "reduce_max", "reduce_mean"]), case=reduce_case(),
       dtype=FLOATS, seed=SEEDS, ties=st.booleans())
def test_float_reductions(op, case, dtype, seed, ties):
    shape, axes, keepdims = case
    rng = np.random.default_rng(seed)
    x = _grid(rng, shape, dtype) if ties else _floats(rng, shape, dtype)
    attrs = {"axes": axes, "keepdims": keepdims}
    mag = None
    if op != "reduce_max":
        mag = _ref(op, [np.abs(x)], **attrs)
    # A producer fused in front (x * 2 is exact), the reduction, and a consumer.
    _check([x], lambda b, x: [r := b.emit(op, [b.mul(x, 2.0)], attrs), b.add(r, 1.0)],
           exact=op == "reduce_max", mags=[None if mag is None else 2 * mag,
                                            None if mag is None else 2 * mag + 1],
           what=f"{op} {list(shape)} axes {axes} keepdims {keepdims}")


@_settings(15)
@given(op=st.sampled_from(["reduce_sum", "reduce_max"]), case=reduce_case(),
       dtype=st.sampled_from([np.int32, np.int64, np.uint32]), seed=SEEDS)
def test_integer_reductions(op, case, dtype, seed):
    shape, axes, keepdims = case
    x = _ints(np.random.default_rng(seed), shape, dtype, full=True)     # sums wrap
    _check([x], lambda b, x: b.emit(op, [x], {"axes": axes, "keepdims": keepdims}),
           exact=True, what=f"{op} {dtype} {list(shape)} axes {axes}")


@_settings(20)
@given(shape=shapes(min_rank=1, max_rank=4), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64, np.int32]), seed=SEEDS)
def test_argmax_first_index_on_ties(shape, data, dtype, seed):
    axis = data.draw(st.integers(0, len(shape) - 1))
    rng = np.random.default_rng(seed)
    x = _grid(rng, shape, dtype, k=2) if np.dtype(dtype).kind == "f" else \
        rng.integers(-2, 3, shape).astype(dtype)
    _check([x], lambda b, x: b.argmax(x, axis=axis), exact=True,
           what=f"argmax {list(shape)} axis {axis}")


@_settings(20)
@given(shape=shapes(min_rank=1, max_rank=3, max_size=20_000), data=st.data(), dtype=FLOATS,
       seed=SEEDS, idt=st.sampled_from([np.int32, np.int64]))
def test_softmax_cross_entropy_family(shape, data, dtype, seed, idt):
    """The composite ops the fusion pass targets: softmax / log_softmax over a random axis
    (a reduction fused with its elementwise producers and consumers), a cross-entropy
    through one_hot with out-of-range labels (all-zero rows), relu and reduce_mean."""
    axis = data.draw(st.integers(0, len(shape) - 1))
    rng = np.random.default_rng(seed)
    x = _floats(rng, shape, dtype, -4, 4)
    depth = shape[-1]
    labels = rng.integers(-1, depth + 1, shape[:-1]).astype(idt)

    def build(b, x, lab):
        sm = b.softmax(x, axis=axis)
        ls = b.log_softmax(x, axis=len(shape) - 1)
        oh = b.one_hot(lab, depth=depth, dtype=DType.of(dtype))
        ce = b.neg(b.reduce_sum(b.mul(oh, ls), axes=(len(shape) - 1,), keepdims=False))
        return [sm, ls, oh, ce, b.reduce_mean(b.relu(x), axes=(axis,), keepdims=True)]
    g = _graph([x, labels], build)
    got, want = _run(g, [x, labels])
    names = ("softmax", "log_softmax", "one_hot", "cross_entropy", "mean relu")
    # log_softmax is z - log(sum exp z): its error is relative to |z| + log(sum), bounded
    # by |x| + |max| + log(n) + 1; the cross-entropy sums those.
    ls_mag = np.abs(x) + np.abs(x).max(axis=-1, keepdims=True) + math.log(depth) + 1
    mags = [None, ls_mag, None, (ls_mag * (want[2] != 0)).sum(axis=-1),
            _ref("reduce_mean", [np.maximum(x, 0)], axes=(axis,), keepdims=True)]
    for name, h, w, m in zip(names, got, want, mags):
        _assert_match(h, w, exact=name == "one_hot", mag=m,
                      what=f"{name} {list(shape)} axis {axis} [{dtype.__name__}]")


# ----------------------------------------------------------------------------- movement

@_settings(15)
@given(shape=shapes(min_rank=1, max_rank=4), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.bool_]), seed=SEEDS)
def test_transpose(shape, data, dtype, seed):
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    rng = np.random.default_rng(seed)
    x = _ints(rng, shape, dtype) if np.dtype(dtype).kind in "ib" else _floats(rng, shape, dtype)
    _check([x], lambda b, x: b.transpose(x, perm=perm), exact=True,
           what=f"transpose {list(shape)} perm {perm}")


@st.composite
def factorization(draw, size):
    """A random shape with ``size`` elements (rank 0..4)."""
    dims, rest = [], size
    for _ in range(draw(st.integers(0, 3))):
        divs = [d for d in range(1, rest + 1) if rest % d == 0]
        d = draw(st.sampled_from(divs))
        dims.append(d)
        rest //= d
    if rest != 1 or not dims:
        dims.append(rest)
    if size == 1 and draw(st.booleans()):
        return ()
    return tuple(draw(st.permutations(dims)))


@_settings(15)
@given(shape=shapes(min_rank=0, max_rank=4), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_reshape_chain(shape, data, dtype, seed):
    size = math.prod(shape)
    s1 = data.draw(factorization(size))
    s2 = data.draw(factorization(size))
    x = _floats(np.random.default_rng(seed), shape, dtype)
    # reshape -> elementwise -> reshape: the simplifier folds chains; the loop must not.
    _check([x], lambda b, x: [r := b.reshape(x, shape=s1), b.reshape(b.neg(r), shape=s2)],
           exact=True, what=f"reshape {list(shape)} -> {s1} -> {s2}")


@st.composite
def slice_case(draw):
    shape = draw(shapes(min_rank=1, max_rank=4))
    begin, end, strides = [], [], []
    for d in shape:
        b0 = draw(st.integers(0, d))
        e0 = draw(st.integers(b0, d))
        if e0 == b0 and draw(st.integers(0, 5)):   # keep empty slices rare
            e0 = d
            b0 = min(b0, d - 1)
        begin.append(b0)
        end.append(e0)
        strides.append(draw(st.integers(1, 4)))
    return shape, tuple(begin), tuple(end), tuple(strides)


@_settings(20)
@given(case=slice_case(), dtype=st.sampled_from([np.float32, np.float64, np.int64]),
       seed=SEEDS)
def test_strided_slice(case, dtype, seed):
    shape, begin, end, strides = case
    rng = np.random.default_rng(seed)
    x = _ints(rng, shape, dtype) if np.dtype(dtype).kind == "i" else _floats(rng, shape, dtype)
    _check([x], lambda b, x: [r := b.slice(x, begin=begin, end=end, strides=strides),
                              b.add(r, r)],
           exact=True, what=f"slice {list(shape)} {begin}:{end}:{strides}")


@_settings(15)
@given(shape=shapes(min_rank=1, max_rank=4), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64, np.int32]), seed=SEEDS)
def test_pad(shape, data, dtype, seed):
    pads = tuple((data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))) for _ in shape)
    value = data.draw(st.sampled_from([0.0, -1.5, 2.0, 7.0]))
    if np.dtype(dtype).kind == "i":
        value = float(int(value))
    rng = np.random.default_rng(seed)
    x = _ints(rng, shape, dtype) if np.dtype(dtype).kind == "i" else _floats(rng, shape, dtype)
    _check([x], lambda b, x: [r := b.pad(x, pads=pads, value=value), b.add(r, r)], exact=True,
           what=f"pad {list(shape)} {pads} value {value}")


@_settings(15)
@given(base=shapes(min_rank=1, max_rank=3, max_size=20_000), data=st.data(),
       dtype=st.sampled_from([np.float32, np.int64, np.bool_]), seed=SEEDS)
def test_concat(base, data, dtype, seed):
    axis = data.draw(st.integers(0, len(base) - 1))
    n = data.draw(st.integers(1, 4))
    rng = np.random.default_rng(seed)
    xs = []
    for _ in range(n):
        s = list(base)
        s[axis] = data.draw(st.one_of(st.sampled_from(EDGE[:4]), st.integers(1, 4)))
        xs.append(_ints(rng, s, dtype) if np.dtype(dtype).kind in "ib"
                  else _floats(rng, s, dtype))
    _check(xs, lambda b, *x: b.concat(*x, axis=axis), exact=True,
           what=f"concat axis {axis}")


@st.composite
def broadcast_to_case(draw):
    target = draw(shapes(min_rank=1, max_rank=4, max_size=40_000))
    drop = draw(st.integers(0, len(target)))
    src = tuple(1 if draw(st.booleans()) else d for d in target[drop:])
    return src, target


@_settings(15)
@given(case=broadcast_to_case(), data=st.data(), dtype=FLOATS, seed=SEEDS)
def test_broadcast_to_and_movement_chain(case, data, dtype, seed):
    src, target = case
    x = _floats(np.random.default_rng(seed), src, dtype)
    rank = len(target)
    perm = tuple(data.draw(st.permutations(range(rank))))

    def build(b, x):
        y = b.broadcast_to(x, shape=target)
        t = b.transpose(y, perm=perm)
        s = b.slice(t, begin=(0,) * rank, end=t.shape, strides=(2,) * rank)
        return [y, b.pad(s, pads=((1, 0),) * rank, value=-1.0)]
    _check([x], build, exact=True, what=f"broadcast {src} -> {target}, perm {perm}")


# ----------------------------------------------------------------------------- matmul

@st.composite
def matmul_case(draw):
    m, k, n = (draw(st.one_of(st.sampled_from(EDGE), st.integers(1, 5))) for _ in range(3))
    batch = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
    drop = draw(st.integers(0, len(batch)))
    other = tuple(1 if draw(st.booleans()) else d for d in batch[drop:])
    ba, bb = (batch, other) if draw(st.booleans()) else (other, batch)
    assume(max(math.prod(ba), 1) * m * k * n <= 2_500_000)
    return ba + (m, k), bb + (k, n)


@_settings(25)
@given(case=matmul_case(), seed=SEEDS,
       epilogue=st.sampled_from([None, "bias", "bias_relu", "bias_tanh", "residual"]),
       dtype=st.sampled_from([np.float32, np.float32, np.float64]))
def test_matmul_batch_broadcast_odd_sizes(case, seed, epilogue, dtype):
    sa, sb = case
    rng = np.random.default_rng(seed)
    a, c = _floats(rng, sa, dtype, -1, 1), _floats(rng, sb, dtype, -1, 1)
    mag = _ref("matmul", [np.abs(a), np.abs(c)])
    n = sb[-1]
    arrays = [a, c]
    if epilogue in ("bias", "bias_relu", "bias_tanh"):
        bias = _floats(rng, (n,), dtype, -1, 1)
        arrays.append(bias)
        mag = mag + np.abs(bias)
    elif epilogue == "residual":
        res = _floats(rng, mag.shape, dtype, -1, 1)
        arrays.append(res)
        mag = mag + np.abs(res)

    def build(b, x, y, *extra):
        r = b.matmul(x, y)
        if epilogue is None:
            return r
        r = b.add(r, extra[0])
        if epilogue == "bias_relu":
            r = b.maximum(r, 0.0)
        elif epilogue == "bias_tanh":
            r = b.tanh(r)
        return r
    # relu/tanh are 1-Lipschitz: the matmul's bound carries through (tanh's own few ulps
    # are inside atol + rtol * mag since |tanh| <= mag).
    _check(arrays, build, exact=False, mags=[mag], what=f"matmul {sa} @ {sb} {epilogue}")


# ----------------------------------------------------------------------------- conv

@st.composite
def conv_case(draw):
    groups = draw(st.integers(1, 2))
    cg = draw(st.sampled_from([1, 2, 3] if groups == 2 else [1, 2, 3, 4, 17]))
    og = draw(st.sampled_from([1, 2, 3, 17]))
    n = draw(st.integers(1, 2))
    h = draw(st.sampled_from([1, 2, 3, 5, 8, 17]))
    w = draw(st.sampled_from([1, 2, 3, 5, 8, 17]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    for ax, (size, k) in enumerate(((h, kh), (w, kw))):
        assume(size + sum(padding[ax]) >= (k - 1) * dilation[ax] + 1)
    oh = (h + sum(padding[0]) - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (w + sum(padding[1]) - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    attrs = {"strides": strides, "padding": padding, "dilation": dilation, "groups": groups}
    return (n, h, w, cg * groups), (kh, kw, cg, og * groups), (n, oh, ow, og * groups), attrs


@_settings(20)
@given(case=conv_case(), seed=SEEDS, dtype=st.sampled_from([np.float32, np.float32,
                                                             np.float64]),
       epilogue=st.sampled_from([None, "bias_relu"]))
def test_conv2d(case, seed, dtype, epilogue):
    xs, ws, ys, attrs = case
    rng = np.random.default_rng(seed)
    x, w = _floats(rng, xs, dtype, -1, 1), _floats(rng, ws, dtype, -1, 1)
    mag = _ref("conv2d", [np.abs(x), np.abs(w)], **attrs)
    arrays = [x, w]
    if epilogue:
        bias = _floats(rng, (ws[3],), dtype, -1, 1)
        arrays.append(bias)
        mag = mag + np.abs(bias)

    def build(b, x, w, *bias):
        y = b.conv2d(x, w, **attrs)
        return b.maximum(b.add(y, bias[0]), 0.0) if bias else y
    _check(arrays, build, exact=False, mags=[mag], what=f"conv2d {xs} {ws} {attrs} {epilogue}")


@_settings(20)
@given(case=conv_case(), seed=SEEDS, dtype=st.sampled_from([np.float32, np.float32,
                                                             np.float64]))
def test_conv2d_gradient_ops(case, seed, dtype):
    xs, ws, ys, attrs = case
    rng = np.random.default_rng(seed)
    x, w = _floats(rng, xs, dtype, -1, 1), _floats(rng, ws, dtype, -1, 1)
    dy = _floats(rng, ys, dtype, -1, 1)
    what = f"{xs} {ws} {attrs}"
    bi = dict(attrs, input_shape=xs)
    _check([dy, w], lambda b, dy, w: b.conv2d_backprop_input(dy, w, **bi), exact=False,
           mags=[_ref("conv2d_backprop_input", [np.abs(dy), np.abs(w)], **bi)],
           what=f"conv2d_backprop_input {what}")
    bf = dict(attrs, filter_shape=ws)
    _check([x, dy], lambda b, x, dy: b.conv2d_backprop_filter(x, dy, **bf), exact=False,
           mags=[_ref("conv2d_backprop_filter", [np.abs(x), np.abs(dy)], **bf)],
           what=f"conv2d_backprop_filter {what}")


@_settings(15)
@given(case=conv_case(), seed=SEEDS)
def test_conv2d_autodiff_step(case, seed):
    """Forward + both gradients + the bias gradient in one compiled program (a conv
    layer's train step: the epilogue and bias-gradient fusions apply)."""
    xs, ws, ys, attrs = case
    rng = np.random.default_rng(seed)
    dtype = np.float32
    x, w = _floats(rng, xs, dtype, -1, 1), _floats(rng, ws, dtype, -1, 1)
    bias, ct = _floats(rng, (ws[3],), dtype, -1, 1), _floats(rng, ys, dtype, -1, 1)
    g = Graph("conv_step")
    vx, vw, vb, vct = (g.add_input(k, TensorType.of(a)) for k, a in
                       zip(("x", "w", "bias", "ct"), (x, w, bias, ct)))
    b = g.builder
    y = b.add(b.conv2d(vx, vw, **attrs), vb)
    loss = b.reduce_sum(b.mul(y, vct), axes=(0, 1, 2, 3), keepdims=False)
    gx, gw, gb = gradients(g, loss, [vx, vw, vb], builder=b)
    g.set_outputs([y, gx, gw, gb])
    arrays = [x, w, bias, ct]
    got, want = _run(g, arrays)
    mags = [_ref("conv2d", [np.abs(x), np.abs(w)], **attrs) + np.abs(bias),
            _ref("conv2d_backprop_input", [np.abs(ct), np.abs(w)], **attrs, input_shape=xs),
            _ref("conv2d_backprop_filter", [np.abs(x), np.abs(ct)], **attrs, filter_shape=ws),
            np.abs(ct).sum(axis=(0, 1, 2))]
    for name, h, wnt, m in zip(("y", "dx", "dw", "dbias"), got, want, mags):
        _assert_match(h, wnt, exact=False, mag=m, what=f"conv step {name} {xs} {ws} {attrs}")


# ----------------------------------------------------------------------------- pooling

@st.composite
def pool_case(draw):
    n = draw(st.integers(1, 2))
    c = draw(st.sampled_from([1, 2, 3, 17, 33]))
    h = draw(st.sampled_from([1, 2, 3, 5, 8, 17]))
    w = draw(st.sampled_from([1, 2, 3, 5, 8, 17]))
    pool = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in pool)
    for size, k, p in ((h, pool[0], padding[0]), (w, pool[1], padding[1])):
        assume(size + sum(p) >= k)
    oh = (h + sum(padding[0]) - pool[0]) // strides[0] + 1
    ow = (w + sum(padding[1]) - pool[1]) // strides[1] + 1
    return (n, h, w, c), (n, oh, ow, c), {"pool": pool, "strides": strides, "padding": padding}


def _pool_input(rng, shape, dtype, ties):
    if ties:                     # few distinct values: windows hold several maxima
        return rng.integers(-2, 3, shape).astype(dtype)
    return (rng.permutation(math.prod(shape)).reshape(shape) * 0.25 - 3).astype(dtype)


@_settings(20)
@given(case=pool_case(), seed=SEEDS, dtype=FLOATS, ties=st.booleans())
def test_pooling_forward(case, seed, dtype, ties):
    xs, ys, attrs = case
    x = _pool_input(np.random.default_rng(seed), xs, dtype, ties)
    # avg_pool2d is a tap-order sum divided by the count: the cpu kernels claim bit-exact.
    _check([x], lambda b, x: [b.max_pool2d(x, **attrs), b.avg_pool2d(x, **attrs)],
           exact=True, what=f"pool {xs} {attrs}")


@_settings(20)
@given(case=pool_case(), seed=SEEDS, dtype=FLOATS, ties=st.booleans())
def test_pooling_gradient_ops(case, seed, dtype, ties):
    """max_pool2d_grad / max_pool2d_gather with ties (first max in row-major window order
    wins, exactly as the reference) and avg_pool2d_grad."""
    xs, ys, attrs = case
    rng = np.random.default_rng(seed)
    x = _pool_input(rng, xs, dtype, ties)
    dy = _floats(rng, ys, dtype)
    gx = _floats(rng, xs, dtype)
    what = f"{xs} {attrs} ties={ties}"
    _check([x, dy], lambda b, x, dy: b.max_pool2d_grad(x, dy, **attrs), exact=True,
           what=f"max_pool2d_grad {what}")
    _check([x, gx], lambda b, x, g: b.max_pool2d_gather(x, g, **attrs), exact=True,
           what=f"max_pool2d_gather {what}")
    _check([dy], lambda b, dy: b.avg_pool2d_grad(dy, input_shape=xs, **attrs), exact=True,
           what=f"avg_pool2d_grad {what}")


@_settings(15)
@given(case=pool_case(), seed=SEEDS, ties=st.booleans(), kind=st.sampled_from(["max", "avg"]))
def test_pooling_autodiff_step(case, seed, ties, kind):
    xs, ys, attrs = case
    rng = np.random.default_rng(seed)
    x = _pool_input(rng, xs, np.float32, ties)
    ct = _floats(rng, ys, np.float32)
    g = Graph("pool_step")
    vx, vct = g.add_input("x", TensorType.of(x)), g.add_input("ct", TensorType.of(ct))
    b = g.builder
    y = b.emit(f"{kind}_pool2d", [vx], attrs)
    loss = b.reduce_sum(b.mul(y, vct), axes=(0, 1, 2, 3), keepdims=False)
    (gx,) = gradients(g, loss, [vx], builder=b)
    g.set_outputs([y, gx])
    got, want = _run(g, [x, ct])
    for name, h, w in zip(("y", "dx"), got, want):
        _assert_match(h, w, exact=True, what=f"{kind} pool step {name} {xs} {attrs}")


# ----------------------------------------------------------------------------- indexing

@st.composite
def gather_case(draw):
    pshape = draw(shapes(min_rank=1, max_rank=3, max_size=20_000))
    axis = draw(st.integers(0, len(pshape) - 1))
    ishape = tuple(draw(st.sampled_from([1, 2, 3, 17])) for _ in range(draw(st.integers(0, 2))))
    assume(math.prod(pshape) // pshape[axis] * max(math.prod(ishape), 1) <= 40_000)
    return pshape, axis, ishape


def _indices(rng, ishape, n, dtype):
    # Mostly in range with duplicates; some negative and some >= n (zeros / dropped).
    idx = rng.integers(-3, n + 3, ishape)
    if idx.size > 1:
        idx.flat[1] = idx.flat[0]               # a duplicate for sure
    return idx.astype(dtype)


@_settings(20)
@given(case=gather_case(), seed=SEEDS, dtype=st.sampled_from([np.float32, np.float64,
                                                              np.int32]),
       idt=st.sampled_from([np.int32, np.int64]))
def test_gather(case, seed, dtype, idt):
    pshape, axis, ishape = case
    rng = np.random.default_rng(seed)
    params = _ints(rng, pshape, dtype) if np.dtype(dtype).kind == "i" else \
        _floats(rng, pshape, dtype)
    idx = _indices(rng, ishape, pshape[axis], idt)
    _check([params, idx], lambda b, p, i: b.gather(p, i, axis=axis), exact=True,
           what=f"gather {pshape} axis {axis} idx {idx.tolist()}")


@_settings(20)
@given(case=gather_case(), seed=SEEDS, dtype=st.sampled_from([np.float32, np.float64,
                                                              np.int32]),
       idt=st.sampled_from([np.int32, np.int64]))
def test_scatter_add(case, seed, dtype, idt):
    shape, axis, ishape = case
    rng = np.random.default_rng(seed)
    idx = _indices(rng, ishape, shape[axis], idt)
    ushape = shape[:axis] + ishape + shape[axis + 1:]
    upd = _ints(rng, ushape, dtype) if np.dtype(dtype).kind == "i" else \
        _floats(rng, ushape, dtype)
    attrs = {"shape": shape, "axis": axis}
    mag = None if np.dtype(dtype).kind == "i" else _ref("scatter_add", [np.abs(upd), idx],
                                                        **attrs)
    _check([upd, idx], lambda b, u, i: b.scatter_add(u, i, **attrs), exact=False, mags=[mag],
           what=f"scatter_add {shape} axis {axis} idx {idx.tolist()}")


# ----------------------------------------------------------------------------- random

@_settings(20)
@given(seed=st.integers(-2 ** 63, 2 ** 63 - 1), counter=st.integers(-2 ** 63, 2 ** 63 - 1),
       salt=st.integers(0, 2 ** 32 - 1), shape=shapes(max_rank=3),
       dtype=st.sampled_from([DType.f32, DType.f64]))
def test_random_uniform_bit_exact(seed, counter, salt, shape, dtype):
    g = Graph("rng")
    s = g.add_input("seed", TensorType((), DType.i64))
    c = g.add_input("counter", TensorType((), DType.i64))
    b = g.builder
    r = b.random_uniform(s, c, shape=shape, salt=salt, dtype=dtype)
    # Dropout-style: inlined into a select, the same bits.
    keep = b.select(b.greater(r, b.const(0.3, dtype)), r, b.const(-1.0, dtype))
    g.set_outputs([r, keep])
    args = [np.array(seed, np.int64), np.array(counter, np.int64)]
    got, want = _run(g, args)
    for h, w in zip(got, want):
        _assert_match(h, w, exact=True, what=f"random_uniform {seed} {counter} {salt} {shape}")


# ----------------------------------------------------------------------------- heavier
# Shapes big enough for the paths small examples never reach: GEMM K split in several
# packed blocks (KC = 256-512) and M in several MC blocks, with the epilogue applied once
# after the last block; GEMMs, loops and convolutions split across threads; the
# backprop-filter batch chunking (>= ~512 positions per chunk).

@pytest.mark.slow
@_settings(10)
@given(m=st.sampled_from([63, 65, 127, 129, 255]), k=st.sampled_from([127, 511, 513, 1030]),
       n=st.sampled_from([17, 65, 127, 257]), batch=st.sampled_from([(), (2,)]),
       epilogue=st.sampled_from([None, "bias_relu", "residual"]), seed=SEEDS)
def test_large_matmul_blocks_and_threads(m, k, n, batch, epilogue, seed):
    rng = np.random.default_rng(seed)
    a, c = _floats(rng, batch + (m, k), np.float32, -1, 1), _floats(rng, (k, n), np.float32, -1, 1)
    mag = _ref("matmul", [np.abs(a), np.abs(c)])
    arrays = [a, c]
    if epilogue == "bias_relu":
        arrays.append(_floats(rng, (n,), np.float32, -1, 1))
    elif epilogue == "residual":
        arrays.append(_floats(rng, mag.shape, np.float32, -1, 1))
    if epilogue:
        mag = mag + np.abs(arrays[-1])

    def build(b, x, y, *extra):
        r = b.matmul(x, y)
        if epilogue:
            r = b.add(r, extra[0])
        return b.maximum(r, 0.0) if epilogue == "bias_relu" else r
    _check(arrays, build, exact=False, mags=[mag], what=f"matmul {a.shape} @ {c.shape} {epilogue}")


@st.composite
def large_conv_case(draw):
    groups = draw(st.integers(1, 2))
    cin = draw(st.sampled_from([2, 16, 34]))
    cout = draw(st.sampled_from([2, 16, 34, 66]))
    n = draw(st.integers(1, 4))
    h, w = draw(st.sampled_from([17, 24, 33])), draw(st.sampled_from([17, 24, 33]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    oh = (h + sum(padding[0]) - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (w + sum(padding[1]) - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    attrs = {"strides": strides, "padding": padding, "dilation": dilation, "groups": groups}
    return (n, h, w, cin), (kh, kw, cin // groups, cout), (n, oh, ow, cout), attrs


@pytest.mark.slow
@_settings(10)
@given(case=large_conv_case(), seed=SEEDS)
def test_large_conv_step(case, seed):
    xs, ws, ys, attrs = case
    rng = np.random.default_rng(seed)
    x, w = _floats(rng, xs, np.float32, -1, 1), _floats(rng, ws, np.float32, -1, 1)
    bias, ct = _floats(rng, (ws[3],), np.float32, -1, 1), _floats(rng, ys, np.float32, -1, 1)
    g = Graph("conv_step")
    vx, vw, vb, vct = (g.add_input(k, TensorType.of(a)) for k, a in
                       zip(("x", "w", "bias", "ct"), (x, w, bias, ct)))
    b = g.builder
    y = b.add(b.conv2d(vx, vw, **attrs), vb)
    loss = b.reduce_sum(b.mul(y, vct), axes=(0, 1, 2, 3), keepdims=False)
    gx, gw, gb = gradients(g, loss, [vx, vw, vb], builder=b)
    g.set_outputs([y, gx, gw, gb])
    got, want = _run(g, [x, w, bias, ct])
    mags = [_ref("conv2d", [np.abs(x), np.abs(w)], **attrs) + np.abs(bias),
            _ref("conv2d_backprop_input", [np.abs(ct), np.abs(w)], **attrs, input_shape=xs),
            _ref("conv2d_backprop_filter", [np.abs(x), np.abs(ct)], **attrs, filter_shape=ws),
            np.abs(ct).sum(axis=(0, 1, 2))]
    for name, h, wnt, m in zip(("y", "dx", "dw", "dbias"), got, want, mags):
        _assert_match(h, wnt, exact=False, mag=m, what=f"conv step {name} {xs} {ws} {attrs}")


@pytest.mark.slow
@_settings(8)
@given(shape=st.sampled_from([(127, 33, 65), (65, 4, 1025), (1, 127, 2049), (300, 513)]),
       data=st.data(), seed=SEEDS)
def test_large_elementwise_and_reductions_threads(shape, data, seed):
    rng = np.random.default_rng(seed)
    x = _floats(rng, shape, np.float32)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    keepdims = data.draw(st.booleans())

    def build(b, x):
        t = b.tanh(b.mul(x, 1.5))
        return [t, b.reduce_sum(b.exp(x), axes=axes, keepdims=keepdims),
                b.reduce_max(x, axes=axes, keepdims=keepdims),
                b.argmax(x, axis=axes[0])]
    # Sums of up to ~150K positive float32 terms: the cpu target keeps the sequential order
    # (no reassociation), whose rounding grows like eps * sqrt(n) * sum (a random walk),
    # ~2e-5 relative here, where numpy's pairwise sum stays near 1e-7: allow 4 eps sqrt(n).
    n_terms = math.prod(shape[a] for a in axes)
    mag = _ref("reduce_sum", [np.exp(x.astype(np.float64))], axes=axes, keepdims=keepdims)
    mag = mag * max(1.0, 4 * 2.0 ** -24 * math.sqrt(n_terms) / 1e-5)
    g = _graph([x], build)
    got, want = _run(g, [x])
    _assert_match(got[0], want[0], exact=False, what=f"tanh {shape}")
    _assert_match(got[1], want[1], exact=False, mag=mag, what=f"sum exp {shape} {axes}")
    _assert_match(got[2], want[2], exact=True, what=f"max {shape} {axes}")
    _assert_match(got[3], want[3], exact=True, what=f"argmax {shape} {axes[0]}")


@pytest.mark.slow
@_settings(8)
@given(n=st.integers(1, 4), hw=st.sampled_from([(33, 33), (64, 17), (17, 65)]),
       c=st.sampled_from([1, 16, 33, 64]), pool=st.sampled_from([(2, 2), (3, 3), (2, 3)]),
       strides=st.sampled_from([(1, 1), (2, 2), (3, 2)]), same=st.booleans(),
       ties=st.booleans(), seed=SEEDS)
def test_large_pooling_step(n, hw, c, pool, strides, same, ties, seed):
    from graphc.ir.ops.nn import conv_padding
    padding = conv_padding("same" if same else "valid", hw, pool, strides)
    attrs = {"pool": pool, "strides": strides, "padding": padding}
    xs = (n,) + hw + (c,)
    rng = np.random.default_rng(seed)
    x = _pool_input(rng, xs, np.float32, ties)
    ys = interpret(_graph([x], lambda b, x: b.max_pool2d(x, **attrs)), [x])[0].shape
    ct = _floats(rng, ys, np.float32)
    for kind in ("max", "avg"):
        g = Graph("pool_step")
        vx, vct = g.add_input("x", TensorType.of(x)), g.add_input("ct", TensorType.of(ct))
        b = g.builder
        y = b.emit(f"{kind}_pool2d", [vx], attrs)
        loss = b.reduce_sum(b.mul(y, vct), axes=(0, 1, 2, 3), keepdims=False)
        (gx,) = gradients(g, loss, [vx], builder=b)
        g.set_outputs([y, gx])
        got, want = _run(g, [x, ct])
        for name, h, w in zip(("y", "dx"), got, want):
            _assert_match(h, w, exact=True, what=f"{kind} pool step {name} {xs} {attrs}")


# ----------------------------------------------------------------------------- programs

def _rotate(b, x, axis):
    """x rolled by one along ``axis`` (slice + concat): shape kept."""
    d = x.shape[axis]
    if d < 2:
        return b.neg(x)
    r = x.rank
    lo = b.slice(x, begin=(0,) * r, end=tuple(1 if k == axis else s for k, s in
                                                enumerate(x.shape)), strides=None)
    hi = b.slice(x, begin=tuple(1 if k == axis else 0 for k in range(r)), end=x.shape,
                 strides=None)
    return b.concat(hi, lo, axis=axis)


def _strided_pad(b, x, axis):
    """Every other element along ``axis`` (strided slice), zero-padded back to shape."""
    d, r = x.shape[axis], x.rank
    s = b.slice(x, begin=(0,) * r, end=x.shape,
                strides=tuple(2 if k == axis else 1 for k in range(r)))
    m = s.shape[axis]
    return b.pad(s, pads=tuple((0, d - m) if k == axis else (0, 0) for k in range(r)),
                 value=0.5)


def _center(b, x, axis):
    n = x.shape[axis]
    return b.sub(x, b.mul(b.reduce_sum(x, axes=(axis,), keepdims=True), 1.0 / n))


def _normalize(b, x, axis):
    m = b.reduce_max(b.abs(x), axes=(axis,), keepdims=True)
    return b.div(x, b.add(m, 1.0))


def _dense(b, x, rng):
    """x @ W over the last axis (W a constant, scaled to keep magnitudes ~1)."""
    k = x.shape[-1]
    w = (rng.standard_normal((k, k)) / math.sqrt(k)).astype(x.dtype.np)
    flat = b.reshape(x, shape=(int(math.prod(x.shape[:-1])), k))
    return b.reshape(b.matmul(flat, b.const(w, x.dtype)), shape=x.shape)


UNARY_STEPS = {
    "neg": lambda b, x, ax, rng: b.neg(x),
    "abs": lambda b, x, ax, rng: b.abs(x),
    "tanh": lambda b, x, ax, rng: b.tanh(x),
    "sigmoid": lambda b, x, ax, rng: b.sigmoid(x),
    "exp_tanh": lambda b, x, ax, rng: b.exp(b.tanh(x)),
    "relu": lambda b, x, ax, rng: b.maximum(x, 0.0),
    "scale": lambda b, x, ax, rng: b.mul(x, 0.75),
    "rotate": lambda b, x, ax, rng: _rotate(b, x, ax),
    "strided_pad": lambda b, x, ax, rng: _strided_pad(b, x, ax),
    "center": lambda b, x, ax, rng: _center(b, x, ax),
    "normalize": lambda b, x, ax, rng: _normalize(b, x, ax),
    "reshape_flat": lambda b, x, ax, rng: b.reshape(b.add(b.reshape(
        x, shape=(int(math.prod(x.shape)),)), 0.25), shape=x.shape),
    "transpose_back": lambda b, x, ax, rng: b.transpose(b.sigmoid(b.transpose(
        x, perm=tuple(reversed(range(x.rank))))), perm=tuple(reversed(range(x.rank)))),
    "cast_roundtrip": lambda b, x, ax, rng: b.cast(b.mul(b.cast(
        x, dtype=DType.f64 if x.dtype == DType.f32 else DType.f32), 2.0), dtype=x.dtype),
    "dense": lambda b, x, ax, rng: _dense(b, x, rng),
}
BINARY_STEPS = {
    "add": lambda b, x, y: b.add(x, y),
    "sub": lambda b, x, y: b.sub(x, y),
    "mul_tanh": lambda b, x, y: b.mul(x, b.tanh(y)),
    "maximum": lambda b, x, y: b.maximum(x, y),
    "minimum": lambda b, x, y: b.minimum(x, y),
    "avg": lambda b, x, y: b.mul(b.add(x, y), 0.5),
}


@_settings(25)
@given(shape=shapes(min_rank=1, max_rank=3, max_size=20_000), data=st.data(), dtype=FLOATS,
       seed=SEEDS, n_in=st.integers(1, 3))
def test_random_programs(shape, data, dtype, seed, n_in):
    """Random DAGs of shape-preserving steps (elementwise, reductions broadcast back,
    rotations, strided slices padded back, reshapes, transposes, casts, constant-weight
    matmuls) with random intermediate values among the outputs: what fusion, the memory
    planner (buffer reuse, in-place updates) and epilogue fusion must get right together.
    Every step is continuous, so rounding differences stay rounding-sized."""
    rng = np.random.default_rng(seed)
    arrays = [_floats(rng, shape, dtype, -2, 2) for _ in range(n_in)]
    g = Graph("program")
    vals = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    b = g.builder
    trace = []
    for _ in range(data.draw(st.integers(2, 12), label="steps")):
        if data.draw(st.booleans(), label="binary"):
            name = data.draw(st.sampled_from(sorted(BINARY_STEPS)), label="op")
            i = data.draw(st.integers(0, len(vals) - 1), label="lhs")
            j = data.draw(st.integers(0, len(vals) - 1), label="rhs")
            vals.append(BINARY_STEPS[name](b, vals[i], vals[j]))
            trace.append(f"v{len(vals) - 1} = {name}(v{i}, v{j})")
        else:
            name = data.draw(st.sampled_from(sorted(UNARY_STEPS)), label="op")
            i = data.draw(st.integers(0, len(vals) - 1), label="arg")
            ax = data.draw(st.integers(0, len(shape) - 1), label="axis")
            vals.append(UNARY_STEPS[name](b, vals[i], ax, rng))
            trace.append(f"v{len(vals) - 1} = {name}(v{i}, axis={ax})")
    computed = list(range(n_in, len(vals)))
    picks = data.draw(st.sets(st.sampled_from(computed), max_size=4), label="outputs")
    outs = sorted(picks | {computed[-1]})
    g.set_outputs([vals[k] for k in outs])
    got, want = _run(g, arrays)
    rtol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    prog = "; ".join(trace)
    for k, h, w in zip(outs, got, want):
        scale = 1.0 + float(np.abs(w).max(initial=0.0))
        assert h.shape == w.shape and h.dtype == w.dtype, f"v{k}: {prog}"
        err = float(np.abs(h.astype(np.float64) - w).max(initial=0.0))
        assert err <= rtol * scale, (
            f"output v{k} differs by {err:.3g} (scale {scale:.3g}) in {list(shape)} "
            f"{dtype.__name__} program: {prog}")


@_settings(25)
@given(shape=shapes(min_rank=1, max_rank=3, max_size=20_000), data=st.data(), seed=SEEDS,
       n_params=st.integers(1, 3), dtype=FLOATS)
def test_inplace_state_update_programs(shape, data, seed, n_params, dtype):
    """Train-step-shaped programs compiled with ``inplace_state=True``: outputs named like
    params (new state) are written into the param arrays where legal. Random update rules
    read other params' old values, new values and each other; log outputs read old and new
    values too (an update must not clobber a value something still reads). Two calls, each
    fed the state the previous one returned, as ``Executable.train_step`` does."""
    rng = np.random.default_rng(seed)
    x = _floats(rng, shape, dtype, -2, 2)
    params = [_floats(rng, shape, dtype, -2, 2) for _ in range(n_params)]
    g = Graph("update")
    vx = g.add_input("x", TensorType.of(x))
    vps = [g.add_param(f"p{i}", TensorType.of(p)) for i, p in enumerate(params)]
    b = g.builder
    vals = [vx] + vps
    trace = []
    for _ in range(data.draw(st.integers(0, 6), label="steps")):
        if data.draw(st.booleans(), label="binary"):
            name = data.draw(st.sampled_from(sorted(BINARY_STEPS)), label="op")
            i = data.draw(st.integers(0, len(vals) - 1), label="lhs")
            j = data.draw(st.integers(0, len(vals) - 1), label="rhs")
            vals.append(BINARY_STEPS[name](b, vals[i], vals[j]))
            trace.append(f"v{len(vals) - 1} = {name}(v{i}, v{j})")
        else:
            name = data.draw(st.sampled_from(sorted(UNARY_STEPS)), label="op")
            i = data.draw(st.integers(0, len(vals) - 1), label="arg")
            ax = data.draw(st.integers(0, len(shape) - 1), label="axis")
            vals.append(UNARY_STEPS[name](b, vals[i], ax, rng))
            trace.append(f"v{len(vals) - 1} = {name}(v{i}, axis={ax})")
    updated = sorted(data.draw(st.sets(st.integers(0, n_params - 1), min_size=1),
                               label="updated params"))
    outs, names = [], []
    for i in updated:
        # SGD-like: p - lr * (some value, maybe another param or an earlier new value).
        k = data.draw(st.integers(0, len(vals) - 1), label=f"update p{i} from")
        new = b.sub(vps[i], b.mul(vals[k], 0.125))
        trace.append(f"p{i}' = p{i} - 0.125 * v{k}")
        if data.draw(st.booleans(), label="chain"):
            vals.append(new)        # later updates and logs may read the new value
        outs.append(new)
        names.append(f"p{i}")
    all_axes = tuple(range(len(shape)))
    mag_of = {}                 # log output -> its sum(|v| * |x|), the rounding scale
    for _ in range(data.draw(st.integers(0, 3), label="logs")):
        k = data.draw(st.integers(0, len(vals) - 1), label="log of")
        log = b.reduce_sum(b.mul(vals[k], vx), axes=all_axes, keepdims=False)
        mag_of[log] = b.reduce_sum(b.mul(b.abs(vals[k]), b.abs(vx)), axes=all_axes,
                                   keepdims=False)
        outs.append(log)
        names.append(None)
        trace.append(f"log = sum(v{k} * x)")
    order = data.draw(st.permutations(range(len(outs))), label="output order")
    outs, names = [outs[k] for k in order], [names[k] for k in order]
    mags = list(mag_of.values())
    g.set_outputs(outs + mags, names + [None] * len(mags))
    mag_pos = {pos: len(outs) + list(mag_of).index(v) for pos, v in enumerate(outs)
               if v in mag_of}
    fn = CPU.compile(g, inplace_state=True)
    prog = "; ".join(trace)
    state = [p.copy() for p in params]          # what the cpu step updates
    ref_state = [p.copy() for p in params]
    x_before = x.copy()
    index = {f"p{i}": i for i in range(n_params)}
    rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    for call in range(2):
        want = interpret(g, [x], ref_state)
        got = fn([x], state)
        got_copy = [np.array(o, copy=True) for o in got]
        for pos, (h, w) in enumerate(zip(got_copy, want)):
            scale = 1.0 + float(np.abs(w).max(initial=0.0))
            if pos in mag_pos:      # a log: a sum of up to 20K products
                scale += float(want[mag_pos[pos]])
            err = float(np.abs(h.astype(np.float64) - w).max(initial=0.0))
            assert err <= 10 * rtol * scale, (
                f"call {call}, output {pos} ({g.output_names[pos]}) differs by {err:.3g} "
                f"(scale {scale:.3g}); {list(shape)} {dtype.__name__} program: {prog}")
        np.testing.assert_array_equal(x, x_before, err_msg=f"the input changed: {prog}")
        new_state = list(state)
        for pos, name in enumerate(g.output_names):
            if name is None:
                continue
            i = index[name]
            ref_state[i] = np.array(want[pos])
            if got[pos] is state[i]:
                continue                            # written in place
            new_state[i] = got_copy[pos]
        for i in range(n_params):
            if f"p{i}" not in g.output_names:
                np.testing.assert_array_equal(state[i], ref_state[i],
                                              err_msg=f"p{i} is not updated but changed: {prog}")
        state = new_state
