"""The cuda target against the reference interpreter, op by op: every registered primitive
through a one-node graph (the registry's own samplers, several seeds, float32 and some
float64), plus the sizes and shapes a schedule gets wrong — odd sizes past the grid-stride
width, broadcasting, reductions through the shared-memory tree (forced by the config) with
groups that do not divide the outputs, NaN semantics, every cast, bit-exact random bits,
batched/broadcast GEMMs over several tiles, and a fused template epilogue.
"""
from __future__ import annotations

import numpy as np
import pytest

from graphc.codegen.cuda.backend import CudaBackend, CudaStep, DeviceStore
from graphc.codegen.cuda.program import CudaProgram
from graphc.codegen.cuda.source import SIM_CONFIG, default_config
from graphc.codegen.kernel import Acc, Buffer, Const, Load, Op, Program, TemplateKernel, Var
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.registry import all_ops
from graphc.runtime.backends import get_backend
from tests.primitive_checks import check_against_interpreter, op_graph

PRIMITIVES = sorted(n for n, op in all_ops().items() if op.primitive)
# One IEEE operation, a selection, integer/boolean arithmetic, data movement, graphc's own
# bit-exact definitions, or sums the kernels do in the reference's order: bit for bit.
EXACT = set("""neg abs sign floor sqrt add sub mul div maximum minimum greater greater_equal
    less less_equal equal not_equal logical_and logical_or logical_not select cast
    reshape transpose broadcast_to slice pad concat constant random_uniform reduce_max argmax
    max_pool2d max_pool2d_gather max_pool2d_grad gather scatter_add avg_pool2d
    avg_pool2d_grad""".split())

CUDA = CudaBackend()
# Every reduction through the W-threads shared-memory tree, groups of outputs per block,
# GEMMs over many small tiles: the paths the default simulator config rarely takes.
TREE = CudaBackend(default_config(red_serial_max=1, red_min_items=1, red_max_threads=4,
                                  red_block_threads=8, mm_tile=8, mm_reg=2, mm_small_tile=4,
                                  mm_small_reg=2, mm_tile_k=4, block=8))


_graph = op_graph


def _check(g, arrays, exact, backend=CUDA, rtol=1e-5, atol=1e-6, msg=""):
    check_against_interpreter(backend, g, arrays, exact, rtol, atol, msg)


def test_cuda_target_is_registered():
    be = get_backend("cuda")
    assert be.name == "cuda" and be.is_available()


@pytest.mark.parametrize("name", PRIMITIVES)
def test_primitive_matches_interpreter(name):
    opdef = all_ops()[name]
    for seed in range(3):
        arrays, attrs = opdef.sample(np.random.default_rng(seed), np.float32)
        _check(_graph(name, arrays, attrs), arrays, name in EXACT, msg=f"{name} seed {seed}")


@pytest.mark.parametrize("name", ["add", "mul", "exp", "tanh", "sigmoid", "reduce_sum",
                                  "reduce_max", "argmax", "matmul", "conv2d",
                                  "conv2d_backprop_filter", "avg_pool2d", "random_uniform",
                                  "gather", "scatter_add", "select", "cast"])
def test_primitive_float64(name):
    opdef = all_ops()[name]
    for seed in (5, 6):
        arrays, attrs = opdef.sample(np.random.default_rng(seed), np.float64)
        _check(_graph(name, arrays, attrs), arrays, name in EXACT, rtol=1e-12, atol=1e-12,
               msg=f"{name} f64 seed {seed}")


@pytest.mark.parametrize("name", ["reduce_sum", "reduce_max", "argmax", "matmul",
                                  "conv2d_backprop_filter", "conv2d", "max_pool2d_grad"])
def test_tree_reductions_and_small_tiles(name):
    opdef = all_ops()[name]
    for seed in range(4):
        arrays, attrs = opdef.sample(np.random.default_rng(seed + 10), np.float32)
        _check(_graph(name, arrays, attrs), arrays, name in EXACT, backend=TREE,
               msg=f"{name} seed {seed}")

# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("n", [1, 31, 33, 65, 67])
def test_odd_sizes_past_the_grid_stride_width(n):
    # The simulator launches at most 2 blocks of 32 threads: 65 and 67 need a second lap.
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n,)).astype(np.float32)
    b = rng.standard_normal((1,)).astype(np.float32)
    g = Graph("odd")
    x, y = g.add_input("x", TensorType.of(a)), g.add_input("y", TensorType.of(b))
    bld = g.builder
    g.set_outputs([bld.tanh(bld.add(x, y)), bld.reduce_sum(x, axes=(0,), keepdims=False)])
    _check(g, [a, b], False)
    _check(g, [a, b], False, backend=TREE)


@pytest.mark.parametrize("sa,sb", [((3, 1, 5), (4, 1)), ((1,), (2, 3, 1)), ((2, 1, 3), (1, 4, 1)),
                                   ((), (3, 2)), ((5, 1), (5, 7))])
def test_broadcasting(sa, sb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    g = Graph("bc")
    x, y = g.add_input("x", TensorType.of(a)), g.add_input("y", TensorType.of(b))
    bld = g.builder
    g.set_outputs([bld.maximum(bld.mul(x, y), bld.sub(y, x)), bld.greater(x, y)])
    _check(g, [a, b], True)


@pytest.mark.parametrize("shape,axes", [((7, 37), (1,)), ((37, 7), (0,)), ((3, 5, 9), (0, 2)),
                                        ((41,), (0,)), ((2, 3, 4), (0, 1, 2))])
def test_reductions_odd_extents_tree(shape, axes):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape).astype(np.float32)
    a.reshape(-1)[::5] = a.reshape(-1)[1]      # ties: argmax must pick the first
    g = Graph("red")
    x = g.add_input("x", TensorType.of(a))
    bld = g.builder
    outs = [bld.reduce_sum(x, axes=axes, keepdims=True), bld.reduce_max(x, axes=axes)]
    if len(axes) == 1:
        outs.append(bld.argmax(x, axis=axes[0]))
    g.set_outputs(outs)
    for be in (CUDA, TREE):
        _check(g, [a], False, backend=be, msg=f"{shape} {axes}")


def test_nan_semantics():
    a = np.array([[1.0, np.nan, 3.0, np.nan], [-np.inf, -np.inf, -np.inf, -np.inf],
                  [2.0, 5.0, 5.0, 1.0]], np.float32)
    b = np.array([np.nan, 0.0, 2.0, -1.0], np.float32)
    g = Graph("nan")
    x, y = g.add_input("x", TensorType.of(a)), g.add_input("y", TensorType.of(b))
    bld = g.builder
    g.set_outputs([bld.maximum(x, y), bld.minimum(x, y), bld.reduce_max(x, axes=(1,)),
                   bld.argmax(x, axis=1), bld.not_equal(x, y), bld.equal(x, y),
                   bld.cast(x, dtype=DType.bool), bld.sign(x)])
    for be in (CUDA, TREE):
        _check(g, [a, b], True, backend=be)


@pytest.mark.parametrize("src", ["f32", "f64", "i32", "i64", "u32", "bool"])
def test_every_cast(src):
    rng = np.random.default_rng(0)
    vals = rng.standard_normal(13) * 7
    if src == "bool":
        a = vals > 0
    elif src == "u32":
        a = np.abs(vals).astype(np.uint32)
    else:
        a = vals.astype(DType[src].np)
    g = Graph("cast")
    x = g.add_input("x", TensorType.of(a))
    g.set_outputs([g.builder.cast(x, dtype=DType[d]) for d in ("f32", "f64", "i32", "i64",
                                                                "u32", "bool")])
    if src in ("f32", "f64"):
        a = np.abs(a)       # negative float -> u32 is implementation-defined in C
    _check(g, [a], True)


def test_random_bits_are_bit_exact_on_a_larger_tensor():
    g = Graph("rnd")
    s = g.add_input("seed", TensorType((), DType.i64))
    c = g.add_input("counter", TensorType((), DType.i64))
    bld = g.builder
    u = bld.emit("random_uniform", [s, c], {"shape": (3, 37), "salt": 0xDEADBEEF,
                                            "dtype": DType.f32})
    d = bld.emit("random_uniform", [s, c], {"shape": (5,), "salt": 7, "dtype": DType.f64})
    g.set_outputs([u, bld.mul(u, 2.0), d])
    for seed, ctr in [(-(2 ** 62) + 12345, 2 ** 40 + 3), (0, 0), (2 ** 31, 1)]:
        _check(g, [np.array(seed, np.int64), np.array(ctr, np.int64)], True)

# ----------------------------------------------------------------------------- templates


@pytest.mark.parametrize("sa,sb", [((17, 9), (9, 13)), ((2, 3, 5, 7), (7, 4)),
                                   ((3, 1, 5, 6), (2, 6, 9)), ((1, 1), (1, 1)),
                                   ((4, 33, 2), (4, 2, 19))])
def test_matmul_batched_broadcast_multi_tile(sa, sb):
    rng = np.random.default_rng(2)
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    g = Graph("mm")
    x, y = g.add_input("a", TensorType.of(a)), g.add_input("b", TensorType.of(b))
    g.set_outputs([g.builder.matmul(x, y)])
    _check(g, [a, b], False, backend=TREE, rtol=1e-5, atol=1e-5)
    if a.size * b.size < 4000:
        _check(g, [a, b], False, rtol=1e-5, atol=1e-5)


def _run_program(program, inputs, cfg=None):
    cfg = cfg or default_config()
    step = CudaStep(None, program, CudaProgram(program, cfg), DeviceStore())
    return step(inputs, [])


def test_matmul_epilogue_fuses_bias_and_relu():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((7, 6)).astype(np.float32)
    bias = rng.standard_normal((6,)).astype(np.float32)
    f32 = DType.f32
    bufs = [Buffer(0, (5, 7), f32, "input", "a"), Buffer(1, (7, 6), f32, "input", "w"),
            Buffer(2, (6,), f32, "input", "bias"), Buffer(3, (5, 6), f32, "output", "y")]
    ep = Op("maximum", (Op("add", (Acc(f32), Load(2, Var(1), f32)), f32), Const(0.0, f32)), f32)
    prog = Program("ep", bufs, [TemplateKernel("k0_matmul", "matmul", [0, 1], 3, {}, ep)],
                   [0, 1, 2], [], [3], ["y"])
    for cfg in (default_config(), TREE.config):
        (y,) = _run_program(prog, [a, w, bias], cfg)
        np.testing.assert_allclose(y, np.maximum(a @ w + bias, 0), rtol=1e-5, atol=1e-5)


def test_conv_epilogue_reads_output_coordinates():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    bias = rng.standard_normal((4,)).astype(np.float32)
    f32 = DType.f32
    attrs = {"strides": (1, 2), "padding": ((1, 1), (0, 1)), "dilation": (1, 1), "groups": 1}
    y_ref = all_ops()["conv2d"].run_ref([x, w], attrs)[0]
    bufs = [Buffer(0, x.shape, f32, "input"), Buffer(1, w.shape, f32, "input"),
            Buffer(2, (4,), f32, "input"), Buffer(3, y_ref.shape, f32, "output", "y")]
    ep = Op("tanh", (Op("add", (Acc(f32), Load(2, Var(3), f32)), f32),), f32)
    prog = Program("cv", bufs, [TemplateKernel("k0_conv2d", "conv2d", [0, 1], 3, attrs, ep)],
                   [0, 1, 2], [], [3], ["y"])
    (y,) = _run_program(prog, [x, w, bias])
    np.testing.assert_allclose(y, np.tanh(y_ref + bias), rtol=1e-5, atol=1e-5)


def test_runs_are_bit_identical():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 45)).astype(np.float32)
    g = Graph("det")
    x = g.add_input("x", TensorType.of(a))
    bld = g.builder
    g.set_outputs([bld.reduce_sum(bld.exp(x), axes=(1,)), bld.reduce_sum(x, axes=(0, 1))])
    step = TREE.compile(g)
    first = [o.copy() for o in step([a], [])]
    for _ in range(2):
        for u, v in zip(first, step([a], [])):
            assert u.tobytes() == v.tobytes()


def test_identical_kernels_share_one_compiled_kernel():
    from graphc.codegen.cuda.program import cache_stats
    g = Graph("share")
    x = g.add_input("x", TensorType((3, 4), DType.f32))
    y = g.add_input("y", TensorType((3, 4), DType.f32))
    bld = g.builder
    g.set_outputs([bld.exp(x), bld.exp(y)])
    step = CUDA.compile(g)
    texts = [ln.source.text for ln in step.cuda_program.launches]
    assert len(texts) == 2 and texts[0] == texts[1]
    assert step.cuda_program.launches[0].code is step.cuda_program.launches[1].code
    assert cache_stats()["hits"] >= 1


def test_simulator_config_is_the_default_under_the_simulator():
    from graphc.codegen.cuda import simulator_enabled
    if not simulator_enabled():
        pytest.skip("running on a real GPU")
    assert default_config() == SIM_CONFIG
