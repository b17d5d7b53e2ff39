"""Convolutions on the cuda target (``graphc/codegen/cuda/conv.py``) against the reference
interpreter: the implicit-GEMM kernels of conv2d and both gradients over odd sizes, strides
2, dilation 2, 'same'/'valid'/uneven padding, grouped GEMMs, the direct fallback of depthwise
convs, a 1-D conv's (N, 1, W, C) view and 1x1 convs — with the simulator's tiles and with
tiny tiles (many tiles, partial slabs, loaders without a fixed slab column) — plus split-K
(partial GEMMs and the ordered sum that carries the epilogue), bit-identical reruns, and
launch plans of real-size layers within a GPU's limits (rendered only, nothing runs).
"""
from __future__ import annotations

import numpy as np
import pytest

from graphc.codegen.cuda.backend import CudaBackend, CudaStep, DeviceStore
from graphc.codegen.cuda.dump import cuda_program_sources, cuda_source
from graphc.codegen.cuda.program import CudaProgram, fuse_program
from graphc.codegen.cuda.source import GPU_CONFIG, default_config
from graphc.codegen.kernel import Acc, Buffer, Const, Load, Op, Program, TemplateKernel, Var
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.ops.nn import _conv_shape

SIM = CudaBackend(default_config())
# 4x4-output tiles of 2x2 registers, 4 threads: slabs of K = 4, many tiles per conv.
TINY = CudaBackend(default_config(mm_tile=4, mm_reg=2, mm_small_tile=4, mm_small_reg=2,
                                  mm_tile_k=4))
# Pretends the device has 8 multiprocessors: small convs split along K.
SPLIT_CFG = default_config(sm_count=8, mm_tile_k=4)
SPLIT = CudaBackend(SPLIT_CFG)

# (name, x shape, filter shape, strides, padding, dilation, groups)
CASES = [
    ("odd_same", (2, 5, 7, 3), (3, 3, 3, 5), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ("stride2_valid", (1, 7, 6, 2), (3, 2, 2, 3), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    ("dilated_uneven", (2, 6, 5, 3), (2, 3, 3, 4), (1, 2), ((1, 2), (2, 1)), (2, 2), 1),
    ("stride2_dilated_same", (1, 7, 7, 2), (3, 3, 2, 3), (2, 2), ((2, 2), (2, 2)), (2, 2), 1),
    ("grouped_gemm", (1, 4, 5, 8), (3, 3, 4, 8), (1, 1), ((1, 1), (1, 1)), (1, 1), 2),
    ("depthwise_direct", (1, 5, 5, 3), (3, 3, 1, 6), (2, 1), ((1, 1), (1, 1)), (1, 1), 3),
    ("conv1d_view", (2, 1, 9, 3), (1, 3, 3, 4), (1, 2), ((0, 0), (2, 2)), (1, 2), 1),
    ("pointwise", (2, 3, 3, 5), (1, 1, 5, 7), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
]
OPS = ["conv2d", "conv2d_backprop_input", "conv2d_backprop_filter"]


def _op_graph(op, xs, ws, strides, padding, dilation, groups, seed=0, dtype=np.float32):
    """A one-node graph of ``op`` for the conv geometry, with random inputs."""
    attrs = {"strides": strides, "padding": padding, "dilation": dilation, "groups": groups}
    ys = _conv_shape("conv2d", xs, ws, attrs)
    rng = np.random.default_rng(seed)
    if op == "conv2d":
        shapes = [xs, ws]
    elif op == "conv2d_backprop_input":
        shapes, attrs = [ys, ws], {**attrs, "input_shape": xs}
    else:
        shapes, attrs = [xs, ys], {**attrs, "filter_shape": ws}
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    g = Graph(op)
    ins = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    g.set_outputs([g.builder.emit(op, ins, attrs)])
    return g, arrays


def _schedules(step):
    return [ln.source.schedule for ln in step.cuda_program.launches]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conv_matches_reference(case, op):
    name, *geom = case
    g, arrays = _op_graph(op, *geom)
    want = interpret(g, arrays)[0]
    for be in (SIM, TINY):
        step = be.compile(g)
        got = step(arrays, [])[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{name} {op}")
        sched = " ".join(_schedules(step))
        path = "direct" if name == "depthwise_direct" else "implicit GEMM"
        assert path in sched, sched


def test_conv_float64_stays_float64():
    g, arrays = _op_graph("conv2d_backprop_input", (1, 5, 4, 2), (3, 3, 2, 3), (2, 1),
                          ((1, 1), (1, 1)), (1, 1), 1, seed=3, dtype=np.float64)
    got = TINY.compile(g)(arrays, [])[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, interpret(g, arrays)[0], rtol=1e-12, atol=1e-12)

# ----------------------------------------------------------------------------- split-K


SPLIT_CASES = [
    # filter gradient: K = 3*7*7 pixels, 18x3 outputs (one tile); chunks of 40, last 27
    ("conv2d_backprop_filter", (3, 9, 9, 2), (3, 3, 2, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    # batch-1 forward / input gradient with long K (many channels) and few pixels
    ("conv2d", (1, 2, 2, 40), (2, 2, 40, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ("conv2d_backprop_input", (1, 2, 2, 3), (2, 2, 3, 40), (1, 1), ((1, 0), (1, 0)), (1, 1), 1),
]


@pytest.mark.parametrize("case", SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_split_k_matches_reference_and_is_bit_identical(case):
    op, *geom = case
    g, arrays = _op_graph(op, *geom, seed=7)
    step = SPLIT.compile(g)
    names = [k.name for k in step.program.kernels]
    assert any(n.endswith("_part") for n in names) and any(n.endswith("_sum") for n in names)
    assert any("split-K" in s for s in _schedules(step))
    first = step(arrays, [])[0].copy()
    np.testing.assert_allclose(first, interpret(g, arrays)[0], rtol=1e-5, atol=1e-5)
    assert step(arrays, [])[0].tobytes() == first.tobytes()


def test_split_k_sum_pass_applies_the_epilogue():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 9, 9, 2)).astype(np.float32)
    dy = rng.standard_normal((3, 7, 7, 3)).astype(np.float32)
    scale = rng.standard_normal((3,)).astype(np.float32)
    f32 = DType.f32
    attrs = {"strides": (1, 1), "padding": ((0, 0), (0, 0)), "dilation": (1, 1), "groups": 1,
             "filter_shape": (3, 3, 2, 3)}
    g, _ = _op_graph("conv2d_backprop_filter", x.shape, (3, 3, 2, 3), (1, 1),
                     ((0, 0), (0, 0)), (1, 1), 1)
    dw = interpret(g, [x, dy])[0]
    bufs = [Buffer(0, x.shape, f32, "input"), Buffer(1, dy.shape, f32, "input"),
            Buffer(2, (3,), f32, "input"), Buffer(3, dw.shape, f32, "output", "dw")]
    # dw * scale[co] - 0.5: reads the output channel coordinate, like a fused bias.
    ep = Op("sub", (Op("mul", (Acc(f32), Load(2, Var(3), f32)), f32), Const(0.5, f32)), f32)
    prog = Program("bf", bufs, [TemplateKernel("k0_conv2d_backprop_filter",
                                               "conv2d_backprop_filter", [0, 1], 3, attrs, ep)],
                   [0, 1, 2], [], [3], ["dw"])
    split = fuse_program(prog, SPLIT_CFG)
    assert [k.name for k in split.kernels] == ["k0_conv2d_backprop_filter_part",
                                               "k0_conv2d_backprop_filter_sum"]
    assert len(prog.kernels) == 1 and len(split.buffers) == len(prog.buffers) + 1
    step = CudaStep(None, split, CudaProgram(split, SPLIT_CFG), DeviceStore())
    (got,) = step([x, dy, scale], [])
    np.testing.assert_allclose(got, dw * scale - 0.5, rtol=1e-5, atol=1e-5)

# ----------------------------------------------------------------------------- launch plans


LAYERS = [
    # (x shape, filter shape, strides, padding, groups, the filter gradient splits along K):
    # VGG-style, LeNet, a first layer, a late narrow-spatial layer (enough output tiles
    # without a split), a ResNeXt-style grouped conv, a depthwise conv (direct)
    ((128, 32, 32, 64), (3, 3, 64, 64), (1, 1), ((1, 1), (1, 1)), 1, True),
    ((128, 28, 28, 1), (5, 5, 1, 6), (1, 1), ((0, 0), (0, 0)), 1, True),
    ((128, 32, 32, 3), (3, 3, 3, 64), (1, 1), ((1, 1), (1, 1)), 1, True),
    ((128, 4, 4, 256), (3, 3, 256, 256), (1, 1), ((1, 1), (1, 1)), 1, False),
    ((32, 14, 14, 128), (3, 3, 4, 128), (2, 2), ((1, 1), (1, 1)), 32, True),
    ((32, 14, 14, 32), (3, 3, 1, 32), (1, 1), ((1, 1), (1, 1)), 32, False),
]


@pytest.mark.parametrize("layer", LAYERS, ids=[f"{x[-1]}to{w[-1]}g{gr}" for x, w, *_, gr, _
                                               in LAYERS])
def test_launch_plans_of_real_layers_fit_a_gpu(layer):
    xs, ws, strides, padding, groups, splits = layer
    for op in OPS:
        g, _ = _op_graph(op, xs, ws, strides, padding, (1, 1), groups)
        program, sources, _ = cuda_program_sources(g, GPU_CONFIG)
        for s in sources:
            assert int(np.prod(s.block)) <= 1024, (op, s.schedule)
            assert s.shared_bytes <= 48 * 1024, (op, s.schedule)
            assert all(1 <= d <= 65535 for d in s.grid), (op, s.grid)
        conv = [s for s in sources if s.name.split("_", 1)[1].startswith(op)
                and not s.name.endswith("_sum")]
        assert len(conv) == 1, [s.name for s in sources]
        direct = groups > 1 and ws[2] == 1     # depthwise
        assert ("direct" if direct else "implicit GEMM") in conv[0].schedule
        if op == "conv2d_backprop_filter":
            # K = N*OH*OW pixels: with few output tiles, split along K and summed in a
            # second kernel.
            assert ("split-K" in conv[0].schedule) == splits, conv[0].schedule
            assert len(program.kernels) == 1 + splits


def test_dump_ir_cuda_stage_shows_the_implicit_gemm_and_its_launch():
    g, _ = _op_graph("conv2d_backprop_filter", (64, 16, 16, 8), (3, 3, 8, 16), (1, 1),
                     ((1, 1), (1, 1)), (1, 1), 1)
    text = cuda_source(g, GPU_CONFIG)
    assert "cuda.shared.array" in text and "cuda.syncthreads()" in text
    plan = text[text.index("launch plan"):]
    assert "implicit GEMM" in plan and "split-K" in plan and "reduce sum" in plan
