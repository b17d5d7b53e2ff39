"""Column sums with few columns (conv bias gradients) run as two vectorizable kernels
(graphc/codegen/cpu/colsum.py): the result matches numpy's sum, the rewrite applies to the
shapes it should, and the summation order depends on the shape only (bit-identical across
thread counts)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from graphc.codegen.cpu import colsum  # noqa: E402
from graphc.codegen.cpu.program import build_program_module  # noqa: E402
from graphc.codegen.lowering import lower_graph  # noqa: E402
from graphc.ir.dtypes import TensorType, f32, f64  # noqa: E402
from graphc.ir.graph import Graph  # noqa: E402
from graphc.runtime.backends import get_backend  # noqa: E402


def _bias_grad_graph(shape, dtype=f32):
    """sum over all but the last axis of select(x > 0, dy, 0): a relu'd conv's bias grad."""
    g = Graph("colsum")
    x = g.add_input("x", TensorType(shape, dtype))
    dy = g.add_input("dy", TensorType(shape, dtype))
    b = g.builder
    masked = b.select(b.greater(x, b.const(0.0, dtype)), dy, b.const(0.0, dtype))
    g.set_outputs([b.reduce_sum(masked, axes=tuple(range(len(shape) - 1)), keepdims=False)])
    return g


def _pieces(g, threads=2):
    return build_program_module(lower_graph(g), threads=threads).stats["pieces"]


@pytest.mark.parametrize("shape", [(64, 28, 28, 6), (64, 10, 10, 16), (8, 14, 14, 3),
                                   (2, 40, 32), (1, 512, 7), (300, 32)])
def test_matches_numpy_and_applies(shape):
    g = _bias_grad_graph(shape)
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    got = get_backend("cpu").compile(g)([x, dy])[0]
    want = np.where(x > 0, dy.astype(np.float64), 0).sum(axis=tuple(range(len(shape) - 1)))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-4)
    assert any(p.endswith("_blocks") for p in _pieces(g))


@pytest.mark.parametrize("shape", [(7, 5), (64, 28, 28, 64), (9, 31, 6), (100, 1)])
def test_other_shapes_keep_the_loop(shape):
    # too few rows for a block (or a remainder), too many or too few columns
    assert not any(p.endswith("_blocks") for p in _pieces(_bias_grad_graph(shape)))


def test_float64_and_order_independent_of_threads(monkeypatch):
    g = _bias_grad_graph((4, 16, 16, 6), f64)
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((2, 4, 16, 16, 6))
    from graphc.codegen.cpu import parallel
    outs = []
    for threads in (1, 2):
        monkeypatch.setattr(parallel, "default_threads", lambda t=threads: t)
        outs.append(get_backend("cpu").compile(g)([x, dy])[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], np.where(x > 0, dy, 0).sum(axis=(0, 1, 2)),
                               rtol=1e-12)


def test_block_plan():
    # C = 6: blocks of lcm(6, 16) = 48 doubled to 96 floats (16 rows), 8 chunks of blocks
    assert colsum.MIN_BLOCK == 64 and colsum.LANES == 16
    g = _bias_grad_graph((64, 28, 28, 6))
    p = lower_graph(g)
    new = []

    def new_temp(shape, dtype, name=""):
        from graphc.codegen.kernel import Buffer
        buf = Buffer(len(p.buffers) + len(new), tuple(shape), dtype, "temp", name)
        new.append(buf)
        return buf
    out = colsum.split_column_sums(p.kernels, p.buffers, new_temp)
    first, second = [k for k in out if k.name.startswith(p.kernels[-1].name)]
    assert first.shape == (8, 96) and first.reduction.extents == (50176 // 16 // 8,)
    assert second.shape == (6,) and second.reduction.extents == (8, 16)
    assert new[0].shape == (8, 96)
