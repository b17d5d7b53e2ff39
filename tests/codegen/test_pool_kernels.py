"""The generated pooling kernels (max/avg, their gradients, the max-pool gather) against
the reference interpreter: overlapping and non-overlapping windows, asymmetric 'same' and
explicit padding, channel counts 1/3/17/33, ties (the gradient goes to the FIRST max in
row-major window order), -inf inputs, bit-identical repeats and begin/end splits, the
8-wide (AVX2) variant, and the max-pool gradient with a relu's gradient folded in. Kernels of a test module are compiled in one LLVM module, once."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from graphc.codegen.cpu import conv, jit, pool  # noqa: E402
from graphc.errors import ShapeError  # noqa: E402
from graphc.ir.ops.nn import conv_padding  # noqa: E402
from graphc.ir.registry import get_op  # noqa: E402

# (x_shape, pool, strides, padding | 'same' | 'valid')
HANDPICKED = [
    ((2, 28, 28, 6), (2, 2), (2, 2), "valid"),        # LeNet pool1
    ((2, 10, 10, 16), (2, 2), (2, 2), "valid"),       # LeNet pool2
    ((1, 1, 1, 1), (1, 1), (1, 1), "valid"),
    ((3, 7, 9, 3), (3, 3), (1, 1), "same"),           # overlapping, padded both sides
    ((2, 11, 10, 17), (3, 2), (2, 3), "same"),        # asymmetric pads
    ((1, 5, 6, 33), (2, 3), (1, 2), ((1, 0), (2, 1))),
    ((2, 9, 8, 1), (3, 3), (3, 3), "same"),
    ((2, 8, 7, 3), (2, 2), (3, 3), "valid"),          # stride > pool: uncovered rows/cols
    ((1, 2, 3, 17), (5, 5), (2, 2), ((2, 2), (2, 2))),  # every window clipped
    ((2, 6, 6, 33), (1, 1), (2, 1), "valid"),
]


def _resolve(case):
    xs, p, s, pad = case
    if isinstance(pad, str):
        pad = conv_padding(pad, xs[1:3], p, s)
    return xs, p, s, pad


def _random_cases(seed, count):
    from graphc.ir.ops.nn import _pool_geometry
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        n, c = int(rng.integers(1, 4)), int(rng.choice([1, 3, 17, 33]))
        h, w = (int(v) for v in rng.integers(1, 12, size=2))
        p = tuple(int(v) for v in rng.integers(1, 5, size=2))
        s = tuple(int(v) for v in rng.integers(1, 4, size=2))
        r = rng.random()
        if r < 0.4:
            pad = conv_padding("same", (h, w), p, s)
        elif r < 0.7:
            pad = ((0, 0), (0, 0))
        else:
            pad = tuple(tuple(int(v) for v in rng.integers(0, k, size=2)) for k in p)
        try:
            _pool_geometry("pool", (n, h, w, c), {"pool": p, "strides": s, "padding": pad})
        except ShapeError:
            continue
        out.append(((n, h, w, c), p, s, pad))
    return out


CASES = [_resolve(c) for c in HANDPICKED] + _random_cases(5, 6)
KINDS = ("max", "avg", "mgrad", "agrad", "gather")


def _emit(m, i, case, **kw):
    xs, p, s, pad = case
    return {"max": pool.emit_max_pool2d(m, f"max{i}", xs, p, s, pad, **kw),
            "avg": pool.emit_avg_pool2d(m, f"avg{i}", xs, p, s, pad, **kw),
            "mgrad": pool.emit_max_pool2d_grad(m, f"mgrad{i}", xs, p, s, pad, **kw),
            "mgrad_relu": pool.emit_max_pool2d_grad(m, f"mgradr{i}", xs, p, s, pad,
                                                    relu_mask=True, **kw),
            "agrad": pool.emit_avg_pool2d_grad(m, f"agrad{i}", xs, p, s, pad, **kw),
            "gather": pool.emit_max_pool2d_gather(m, f"gather{i}", xs, p, s, pad, **kw)}


def _compile(cases, **kw):
    jit_kw = {"cpu": kw.pop("cpu")} if "cpu" in kw else {}
    m = jit.ir_module("pool_tests")
    fns = [_emit(m, i, c, **kw) for i, c in enumerate(cases)]
    jm = jit.JitModule(m, **jit_kw)
    return [{k: conv.ctypes_caller(jm, f) for k, f in d.items()} for d in fns], m


@pytest.fixture(scope="module")
def host():
    return _compile(CASES)[0]


def _inputs(case, seed, ties=True):
    xs, p, s, pad = case
    rng = np.random.default_rng(seed)
    # Small integers: many exact ties inside windows (and equal maxima across them).
    x = (rng.integers(-3, 4, size=xs) if ties else rng.standard_normal(xs)).astype(np.float32)
    attrs = {"pool": p, "strides": s, "padding": pad}
    y = get_op("max_pool2d").run_ref([x], attrs)[0]
    dy = rng.standard_normal(y.shape).astype(np.float32)
    g = rng.standard_normal(xs).astype(np.float32)
    return x, dy, g, attrs


def _refs(case, x, dy, g, attrs):
    xs = case[0]
    r = lambda op, ins, a=attrs: get_op(op).run_ref(ins, a)[0]  # noqa: E731
    mgrad = r("max_pool2d_grad", [x, dy])
    return {"max": (r("max_pool2d", [x]), (x,)),
            "avg": (r("avg_pool2d", [x]), (x,)),
            "mgrad": (mgrad, (x, dy)),
            # relumask.py: the gradient through a relu (x its output) before the pool
            "mgrad_relu": (np.where(x > 0, mgrad, mgrad * np.float32(0)), (x, dy)),
            "agrad": (r("avg_pool2d_grad", [dy], {**attrs, "input_shape": xs}), (dy,)),
            "gather": (r("max_pool2d_gather", [x, g]), (x, g))}


def _run(fn, ins, shape, begin=0, end=None):
    out = np.full(shape, np.nan, np.float32)
    fn(*ins, out, begin, fn.split_extent if end is None else end)
    return out


def _check_case(fns, case, seed, ties=True):
    x, dy, g, attrs = _inputs(case, seed, ties)
    for kind, (ref, ins) in _refs(case, x, dy, g, attrs).items():
        out = _run(fns[kind], ins, ref.shape)
        # Same operations in the same order as the reference: equal bit for bit (the
        # avg divides in fp32, which equals numpy's float64 division rounded to fp32).
        assert np.array_equal(out, ref), (kind, case, np.nanmax(np.abs(out - ref)))


@pytest.mark.parametrize("i", range(len(CASES)))
def test_matches_reference_with_ties(host, i):
    _check_case(host[i], CASES[i], i)


def test_matches_reference_random_values(host):
    for i in (0, 3, 4, 8):
        _check_case(host[i], CASES[i], 50 + i, ties=False)


def test_max_grad_first_max_wins():
    # One window, all four taps equal: everything goes to tap (0, 0); then make tap (1, 0)
    # the strict maximum; and a clipped window whose in-bounds values are all -inf keeps
    # the padded tap 0 (so no gradient reaches dx), exactly like the reference.
    m = jit.ir_module()
    f = pool.emit_max_pool2d_grad(m, "g", (1, 2, 2, 3), (2, 2), (2, 2))
    fg = pool.emit_max_pool2d_gather(m, "ga", (1, 2, 2, 3), (2, 2), (2, 2))
    fp = pool.emit_max_pool2d_grad(m, "gp", (1, 1, 2, 1), (2, 2), (1, 1), ((1, 0), (0, 0)))
    jm = jit.JitModule(m)
    grad, gather, gpad = (conv.ctypes_caller(jm, fn) for fn in (f, fg, fp))
    x = np.ones((1, 2, 2, 3), np.float32)
    dy = np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 1, 1, 3)
    dx = _run(grad, (x, dy), x.shape)
    assert np.array_equal(dx[0, 0, 0], [1, 2, 3]) and not dx.reshape(4, 3)[1:].any()
    x[0, 1, 0, 1] = 5
    dx = _run(grad, (x, dy), x.shape)
    assert dx[0, 1, 0, 1] == 2 and dx[0, 0, 0, 1] == 0
    gsrc = np.arange(12, dtype=np.float32).reshape(x.shape)
    assert np.array_equal(_run(gather, (x, gsrc), dy.shape).ravel(), [0, 7, 2])
    xi = np.full((1, 1, 2, 1), -np.inf, np.float32)
    dyi = np.ones((1, 1, 1, 1), np.float32)
    ref = get_op("max_pool2d_grad").run_ref(
        [xi, dyi], {"pool": (2, 2), "strides": (1, 1), "padding": ((1, 0), (0, 0))})[0]
    out = _run(gpad, (xi, dyi), xi.shape)
    assert np.array_equal(out, ref) and not out.any()


@pytest.mark.parametrize("i", [0, 3, 4, 7])
def test_bit_identical_repeats_and_splits(host, i):
    case = CASES[i]
    x, dy, g, attrs = _inputs(case, 70 + i)
    for kind, (ref, ins) in _refs(case, x, dy, g, attrs).items():
        fn = host[i][kind]
        whole = _run(fn, ins, ref.shape)
        assert np.array_equal(whole, _run(fn, ins, ref.shape))
        n = fn.split_extent
        assert n == case[0][0]
        if n < 2:
            continue
        half = np.full(ref.shape, np.nan, np.float32)
        fn(*ins, half, 0, 1)
        assert np.isnan(half[1:]).all() and not np.isnan(half[:1]).any()
        fn(*ins, half, 1, n)
        assert np.array_equal(half, whole)


def test_eight_wide_avx2_variant():
    cases = [CASES[i] for i in (0, 3, 4, 5, 8)]
    fns, m = _compile(cases, vector_width=8, cpu="haswell")
    for i, case in enumerate(cases):
        _check_case(fns[i], case, 90 + i)
    small = jit.ir_module()
    _emit(small, 0, CASES[4], vector_width=8)
    asm = jit.emit_assembly(small, jit.target_machine("haswell"))
    assert "ymm" in asm and "zmm" not in asm


def test_shape_errors():
    m = jit.ir_module()
    with pytest.raises(ShapeError, match="smaller than the window"):
        pool.emit_max_pool2d(m, "a", (1, 4, 4, 1), (2, 2), (1, 1), ((2, 0), (0, 0)))
    with pytest.raises(ShapeError):
        pool.emit_avg_pool2d(m, "b", (1, 1, 1, 1), (3, 3), (1, 1))
