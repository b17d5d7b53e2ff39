"""The cpu target against the reference interpreter, op by op: every registered primitive
(the registry's own samplers, float32 and float64), the edge sizes vector loops get wrong
(1, 3, 17, 33, 65, 127), every cast pair, numpy's NaN semantics, bit-exact random bits, and
the properties of the generated code (vectorized, no reassociation, deterministic threads).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from graphc.codegen.cpu.backend import CpuBackend  # noqa: E402
from graphc.ir.dtypes import DType, TensorType  # noqa: E402
from graphc.ir.graph import Graph  # noqa: E402
from graphc.ir.interpreter import interpret  # noqa: E402
from graphc.ir.registry import all_ops  # noqa: E402
from graphc.runtime.backends import get_backend  # noqa: E402
from tests.primitive_checks import check_against_interpreter, op_graph  # noqa: E402

PRIMITIVES = sorted(n for n, op in all_ops().items() if op.primitive)
SIZES = (1, 3, 17, 33, 65, 127)
# Results that must match numpy bit for bit (one IEEE operation, a selection, integer or
# boolean arithmetic, data movement, or graphc's own bit-exact definition).
EXACT = set("""neg abs sign floor sqrt add sub mul div maximum minimum greater greater_equal
    less less_equal equal not_equal logical_and logical_or logical_not select cast
    reshape transpose broadcast_to slice pad concat constant random_uniform reduce_max argmax
    max_pool2d max_pool2d_gather max_pool2d_grad gather avg_pool2d avg_pool2d_grad""".split())

CPU = CpuBackend()


_graph = op_graph


def _check(g, arrays, exact, rtol=1e-5, atol=1e-6, msg=""):
    check_against_interpreter(CPU, g, arrays, exact, rtol, atol, msg)


def test_cpu_target_is_registered():
    be = get_backend("cpu")
    assert be.name == "cpu" and be.is_available()


@pytest.mark.parametrize("name", PRIMITIVES)
def test_primitive_matches_interpreter_f32(name):
    opdef = all_ops()[name]
    for seed in range(4):
        arrays, attrs = opdef.sample(np.random.default_rng(seed), np.float32)
        _check(_graph(name, arrays, attrs), arrays, name in EXACT, msg=f"{name} seed {seed}")


@pytest.mark.parametrize("name", PRIMITIVES)
def test_primitive_matches_interpreter_f64(name):
    opdef = all_ops()[name]
    for seed in (10, 11):
        arrays, attrs = opdef.sample(np.random.default_rng(seed), np.float64)
        _check(_graph(name, arrays, attrs), arrays, name in EXACT, rtol=1e-12, atol=1e-12,
               msg=f"{name} seed {seed}")

# ----------------------------------------------------------------------------- edge sizes


UNARY = {"neg": (-3, 3), "exp": (-5, 5), "log": (0.01, 9), "log1p": (-0.9, 9),
         "sqrt": (0, 9), "tanh": (-6, 6), "sigmoid": (-30, 30), "abs": (-3, 3),
         "sign": (-3, 3), "floor": (-3, 3), "erf": (-3, 3)}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_edge_sizes(name):
    rng = np.random.default_rng(1)
    lo, hi = UNARY[name]
    for n in SIZES:
        for shape in ((n,), (3, n), (n, 5)):
            x = rng.uniform(lo, hi, shape).astype(np.float32)
            _check(_graph(name, [x], {}), [x], name in EXACT, msg=f"{name} {shape}")


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                  "greater", "less_equal", "not_equal"])
def test_binary_broadcast_edge_sizes(name):
    rng = np.random.default_rng(2)
    for n in SIZES:
        for sa, sb in (((n,), (n,)), ((4, n), (n,)), ((n, 1), (1, 7)), ((2, n, 3), (n, 1)),
                       ((), (n,))):
            a = rng.uniform(0.2, 2, sa).astype(np.float32)
            b = rng.uniform(0.5, 2, sb).astype(np.float32)
            _check(_graph(name, [a, b], {}), [a, b], name in EXACT,
                   msg=f"{name} {sa} {sb}")


@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max", "argmax"])
def test_reductions_edge_sizes(op):
    rng = np.random.default_rng(3)
    for n in SIZES:
        x = rng.standard_normal((n, 5, n % 7 + 1)).astype(np.float32)
        for axes in ((0,), (1,), (2,), (0, 2), (0, 1, 2)):
            if op == "argmax":
                if len(axes) > 1:
                    continue
                attrs = {"axis": axes[0]}
            else:
                attrs = {"axes": axes, "keepdims": n % 2 == 0}
            _check(_graph(op, [x], attrs), [x], op != "reduce_sum", msg=f"{op} {n} {axes}")


def test_matmul_edge_sizes():
    rng = np.random.default_rng(4)
    for m, k, n in [(1, 1, 1), (3, 17, 1), (17, 3, 33), (33, 65, 17), (65, 1, 127),
                    (127, 33, 65), (5, 0, 3)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        _check(_graph("matmul", [a, b], {}, square=False), [a, b], False, rtol=2e-5,
               atol=1e-5, msg=f"{m}x{k}x{n}")
    # Batched with numpy broadcasting of batch dims, and float64 (the loop fallback).
    for sa, sb in [((2, 3, 17, 5), (5, 9)), ((4, 3, 7), (1, 7, 33)), ((3, 1, 4, 6), (2, 6, 5)),
                   ((9, 2, 3), (9, 3, 4))]:
        for dt in (np.float32, np.float64):
            a = rng.standard_normal(sa).astype(dt)
            b = rng.standard_normal(sb).astype(dt)
            _check(_graph("matmul", [a, b], {}, square=False), [a, b], False, rtol=2e-5,
                   atol=1e-5, msg=f"{sa} @ {sb} {dt}")


def test_conv_and_pool_geometries():
    rng = np.random.default_rng(5)
    cases = [  # x shape, w shape, strides, padding, dilation, groups
        ((2, 9, 7, 3), (3, 3, 3, 17), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
        ((1, 17, 17, 2), (5, 3, 2, 4), (2, 3), ((2, 1), (0, 2)), (1, 1), 1),
        ((2, 8, 8, 4), (3, 3, 2, 6), (1, 2), ((2, 2), (1, 1)), (2, 1), 2),
        ((1, 5, 33, 1), (1, 5, 1, 3), (1, 1), ((0, 0), (2, 2)), (1, 2), 1),
    ]
    for xs, ws, st, pad, dil, grp in cases:
        attrs = {"strides": st, "padding": pad, "dilation": dil, "groups": grp}
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        g = _graph("conv2d", [x, w], attrs, square=False)
        _check(g, [x, w], False, rtol=1e-4, atol=1e-5, msg=f"conv {xs} {ws}")
        y = interpret(g, [x, w])[0]
        dy = rng.standard_normal(y.shape).astype(np.float32)
        bi = _graph("conv2d_backprop_input", [dy, w], {**attrs, "input_shape": xs},
                    square=False)
        _check(bi, [dy, w], False, rtol=1e-4, atol=1e-5, msg=f"bi {xs} {ws}")
        bf = _graph("conv2d_backprop_filter", [x, dy], {**attrs, "filter_shape": ws},
                    square=False)
        _check(bf, [x, dy], False, rtol=1e-4, atol=1e-4, msg=f"bf {xs} {ws}")
    for xs, pool, st, pad in [((2, 9, 7, 17), (2, 2), (2, 2), ((0, 0), (0, 0))),
                              ((1, 8, 8, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),
                              ((1, 7, 5, 33), (3, 2), (1, 3), ((1, 0), (0, 1)))]:
        attrs = {"pool": pool, "strides": st, "padding": pad}
        x = rng.permutation(int(np.prod(xs))).reshape(xs).astype(np.float32)
        for op in ("max_pool2d", "avg_pool2d"):
            _check(_graph(op, [x], attrs), [x], True, msg=f"{op} {xs}")
        y = interpret(_graph("max_pool2d", [x], attrs, square=False), [x])[0]
        dy = rng.standard_normal(y.shape).astype(np.float32)
        _check(_graph("max_pool2d_grad", [x, dy], attrs), [x, dy], True, msg=f"mpg {xs}")
        _check(_graph("max_pool2d_gather", [x, x * 2], attrs), [x, x * 2], True,
               msg=f"mpgather {xs}")
        _check(_graph("avg_pool2d_grad", [dy], {**attrs, "input_shape": xs}), [dy], True,
               msg=f"apg {xs}")


def test_gather_scatter_add_sizes():
    rng = np.random.default_rng(6)
    for n in (1, 17, 65):
        params = rng.standard_normal((n, 33)).astype(np.float32)
        idx = rng.integers(-2, n + 2, size=(3, 17)).astype(np.int32)
        _check(_graph("gather", [params, idx], {"axis": 0}), [params, idx], True)
        upd = rng.standard_normal((3, 17, 33)).astype(np.float32)
        _check(_graph("scatter_add", [upd, idx], {"shape": (n, 33), "axis": 0}), [upd, idx],
               False, msg=f"scatter {n}")
        upd = rng.standard_normal((2, 3, 17, 5)).astype(np.float64)
        _check(_graph("scatter_add", [upd, idx.astype(np.int64)], {"shape": (2, n, 5),
                                                                   "axis": 1}),
               [upd, idx.astype(np.int64)], False, rtol=1e-12, msg=f"scatter axis1 {n}")


def test_pad_concat_slice_guards():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((17, 33)).astype(np.float32)
    _check(_graph("pad", [x], {"pads": ((2, 3), (1, 0)), "value": -1.5}), [x], True)
    _check(_graph("pad", [x], {"pads": ((0, 0), (5, 4))}), [x], True)
    y = rng.standard_normal((17, 3)).astype(np.float32)
    _check(_graph("concat", [x, y, x], {"axis": 1}), [x, y, x], True)
    _check(_graph("slice", [x], {"begin": (1, 2), "end": (16, 33), "strides": (3, 2)}), [x],
           True)

# ----------------------------------------------------------------------------- dtypes


def _values(dt: DType, rng, n, for_unsigned_target=False):
    if dt.is_float:
        v = rng.uniform(-1e3, 1e3, n)
        v[:4] = [0.0, -0.0, 0.5, -1.5]
        if for_unsigned_target:
            v = np.abs(v)
        return v.astype(dt.np)
    if dt == DType.bool:
        return rng.random(n) < 0.5
    if dt == DType.u32:
        return rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    info = np.iinfo(dt.np)
    v = rng.integers(info.min, info.max, n, dtype=np.int64, endpoint=True).astype(dt.np)
    v[:4] = [0, -1, 1, 7]
    return v


DTYPES = [DType.f32, DType.f64, DType.i32, DType.i64, DType.u32, DType.bool]


@pytest.mark.parametrize("src", DTYPES, ids=str)
def test_cast_every_dtype_pair(src):
    rng = np.random.default_rng(8)
    for dst in DTYPES:
        x = _values(src, rng, 67, for_unsigned_target=dst == DType.u32)
        if src.is_float and not dst.is_float and dst != DType.bool:
            # Out-of-range float -> int is undefined in C and numpy: keep it in range.
            x = np.clip(x, -2e3, 2e3).astype(src.np)
        _check(_graph("cast", [x], {"dtype": dst}, square=False), [x], True,
               msg=f"{src} -> {dst}")


@pytest.mark.parametrize("dt", [DType.i32, DType.i64, DType.u32], ids=str)
def test_integer_arithmetic_wraps_like_numpy(dt):
    rng = np.random.default_rng(9)
    a, b = _values(dt, rng, 65), _values(dt, rng, 65)
    for op in ("add", "sub", "mul", "maximum", "minimum", "greater", "less_equal", "equal"):
        _check(_graph(op, [a, b], {}, square=False), [a, b], True, msg=f"{op} {dt}")
    for op in ("neg", "abs", "sign"):
        _check(_graph(op, [a], {}, square=False), [a], True, msg=f"{op} {dt}")
    for op in ("reduce_sum", "reduce_max"):
        _check(_graph(op, [a.reshape(5, 13)], {"axes": (1,), "keepdims": False},
                      square=False), [a.reshape(5, 13)], True, msg=f"{op} {dt}")
    _check(_graph("argmax", [a.reshape(13, 5)], {"axis": 0}, square=False),
           [a.reshape(13, 5)], True)

# ----------------------------------------------------------------------------- NaN / Inf


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_and_inf_follow_numpy():
    nan, inf = np.nan, np.inf
    a = np.array([nan, 1.0, nan, -inf, inf, 0.0, -0.0, 2.0, nan, 3.0], np.float32)
    b = np.array([1.0, nan, nan, inf, -inf, -0.0, 0.0, 2.0, -inf, 1.0], np.float32)
    for op in ("maximum", "minimum", "greater", "greater_equal", "less", "less_equal",
               "equal", "not_equal", "add", "mul"):
        _check(_graph(op, [a, b], {}, square=False), [a, b], True, msg=op)
    for op in ("abs", "sign", "neg", "floor", "sqrt", "exp", "log", "tanh", "sigmoid"):
        _check(_graph(op, [a], {}, square=False), [a], op not in ("exp", "log", "tanh"),
               msg=op)
    _check(_graph("cast", [a], {"dtype": DType.bool}, square=False), [a], True)
    rows = np.array([[1, nan, 3, nan], [-inf, -inf, -inf, -inf], [2, 5, 5, 1],
                     [nan, 9, 1, 2]], np.float32)
    for axis in (0, 1):
        _check(_graph("argmax", [rows], {"axis": axis}, square=False), [rows], True)
        _check(_graph("reduce_max", [rows], {"axes": (axis,), "keepdims": False},
                      square=False), [rows], True)

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_vectorized_float32_math_is_within_2_ulp(name):
    # exp/tanh/sigmoid are inline polynomials (vectorizable), not libm calls: check them
    # over the whole float32 range, the overflow/underflow edges and the special values.
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.uniform(-110, 95, 20000), rng.uniform(-1, 1, 5000),
                        rng.uniform(-1e-3, 1e-3, 1000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.73, -87.3, -103.97,
                         -104.0, 1e-30, -1e-30, 0.625, -0.625, 9.0, 20.0]]).astype(np.float32)
    g = _graph(name, [x], {}, square=False)
    got, want = CPU.compile(g)([x], [])[0], interpret(g, [x])[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isfinite(want)], want[~np.isfinite(want)])
    np.testing.assert_array_equal(got[want == 0], want[want == 0])
    fin = np.isfinite(want) & (want != 0)
    ulps = np.abs(got[fin].astype(np.float64) - want[fin]) / np.spacing(np.abs(want[fin]))
    assert ulps.max() <= 3, (name, ulps.max())

# ----------------------------------------------------------------------------- random


def test_random_uniform_is_bit_exact():
    for seed, counter, salt, shape, dt in [(0, 0, 0, (65, 33), DType.f32),
                                           (-7, 2 ** 40 + 3, 2 ** 32 - 1, (127,), DType.f64),
                                           (2 ** 62 + 11, 5, 17, (3, 17, 1), DType.f32)]:
        g = Graph("rng")
        s = g.add_input("seed", TensorType((), DType.i64))
        c = g.add_input("counter", TensorType((), DType.i64))
        r = g.builder.emit("random_uniform", [s, c], {"shape": shape, "salt": salt,
                                                      "dtype": dt})
        # Dropout-style use: inlined into a consumer, the mask is the same bits.
        keep = g.builder.emit("greater", [r, g.builder.const(0.3, dt)])
        g.set_outputs([r, keep])
        args = [np.array(seed, np.int64), np.array(counter, np.int64)]
        _check(g, args, True, msg=f"{seed} {counter} {salt}")

# ----------------------------------------------------------------------------- codegen


def _elementwise_graph(n=4096):
    g = Graph("ew")
    x = g.add_input("x", TensorType((n,), DType.f32))
    y = g.add_input("y", TensorType((n,), DType.f32))
    b = g.builder
    g.set_outputs([b.add(b.mul(x, y), b.maximum(x, 0.0)),
                   b.reduce_sum(b.reshape(x, shape=(64, n // 64)), axes=(1,), keepdims=False)])
    return g


def test_generated_code_is_vectorized_and_keeps_sum_order():
    from graphc.codegen.cpu.dump import llvm_ir
    text = llvm_ir(_elementwise_graph())
    assert re.search(r"<(8|16) x float>", text), "elementwise loop was not vectorized"
    assert "noalias" in text
    assert not re.search(r"fadd (reassoc|fast)", text), "a reduction was reassociated"
    assert "nnan" not in text and "ninf" not in text
    # One exported entry per step.
    assert len(re.findall(r"^define (?!internal)", text, re.M)) == 1


def test_parallel_split_is_deterministic_and_matches_serial():
    from graphc.codegen.cpu import jit
    from graphc.codegen.cpu.backend import CpuStep
    from graphc.codegen.cpu.program import build_program_module
    from graphc.codegen.lowering import lower_graph
    g = Graph("big")
    x = g.add_input("x", TensorType((512, 1024), DType.f32))
    b = g.builder
    g.set_outputs([b.tanh(b.mul(x, 1.5)), b.reduce_sum(b.exp(x), axes=(0,), keepdims=False),
                   b.reduce_sum(b.mul(x, x), axes=(1,), keepdims=False)])
    g = CPU.prepare(g)
    x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    results = []
    for threads in (1, 2, 2):
        prog = lower_graph(g)
        pm = build_program_module(prog, threads=threads)
        pm.ensure_symbols()
        if threads > 1:
            assert pm.stats["parallel_kernels"] >= 1
        step = CpuStep(g, prog, pm, jit.JitModule(pm.module), {})
        results.append([o.copy() for o in step([x], [])])
    for r in results[1:]:
        for a, b_ in zip(results[0], r):
            np.testing.assert_array_equal(a, b_)


def test_step_rebinds_inputs_and_guards_against_aliasing():
    g = Graph("axpy")
    x = g.add_input("x", TensorType((33,), DType.f32))
    p = g.add_param("p", TensorType((33,), DType.f32))
    g.set_outputs([g.builder.add(p, g.builder.mul(x, 2.0))])
    step = CPU.compile(g)
    x = np.arange(33, dtype=np.float32)
    p = np.ones(33, np.float32)
    out = step([x], [p])[0]
    np.testing.assert_array_equal(out, 1 + 2 * x)
    x[:] = 1.0                                  # same object, new contents
    np.testing.assert_array_equal(step([x], [p])[0], np.full(33, 3.0, np.float32))
    prev = step([x], [p])[0]
    # Feeding the returned array back as the param: read as a copy, not overwritten mid-run.
    np.testing.assert_array_equal(step([x], [prev])[0], np.full(33, 5.0, np.float32))
    # Lists, other dtypes and non-contiguous arrays are converted.
    np.testing.assert_array_equal(step([list(range(33))], [np.ones(66)[::2]])[0],
                                  1 + 2 * np.arange(33, dtype=np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        step([np.ones(32, np.float32)], [p])
