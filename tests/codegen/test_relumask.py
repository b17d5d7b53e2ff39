"""The relu gradient folded into the max-pool gradient feeding it
(graphc/codegen/cpu/relumask.py): applied exactly where it is legal, and the cpu target's
result equals the interpreter's either way."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from graphc.codegen.cpu.relumask import fold_relu_masks  # noqa: E402
from graphc.codegen.kernel import LoopKernel, TemplateKernel  # noqa: E402
from graphc.codegen.lowering import lower_graph  # noqa: E402
from graphc.ir.dtypes import TensorType, f32, f64  # noqa: E402
from graphc.ir.graph import Graph  # noqa: E402
from graphc.ir.interpreter import interpret  # noqa: E402
from graphc.runtime.backends import get_backend  # noqa: E402

POOL = {"pool": (2, 2), "strides": (2, 2), "padding": ((0, 0), (0, 0))}


def _graph(variant="plain", dtype=f32, pool=POOL, shape=(2, 8, 6, 3)):
    """dz = select(r > 0, g, g * 0) with g = max_pool2d_grad(r, dy): a relu's gradient
    behind a max pool. ``variant``: 'g_out' also returns g; 'other_r' masks with another
    array than the pool's input."""
    gr = Graph("relumask")
    r = gr.add_input("r", TensorType(shape, dtype))
    other = gr.add_input("s", TensorType(shape, dtype))
    b = gr.builder
    y = b.max_pool2d(r, **pool)
    dy = gr.add_input("dy", TensorType(y.shape, dtype))
    g = b.max_pool2d_grad(r, dy, **pool)
    m = other if variant == "other_r" else r
    zero = b.const(0.0, dtype)
    dz = b.select(b.greater(m, zero), g, b.mul(g, zero))
    gr.set_outputs([dz, g] if variant == "g_out" else [dz])
    return gr


def _folded(gr):
    p = lower_graph(gr)
    k = fold_relu_masks(p.kernels, p.buffers, set(p.outputs))
    masked = [t for t in k if isinstance(t, TemplateKernel) and t.attrs.get("_relu_mask")]
    selects = [t for t in k if isinstance(t, LoopKernel) and "select" in t.name]
    return masked, selects


def test_folds_only_where_legal():
    assert [len(x) for x in _folded(_graph())] == [1, 0]
    # ... and the cpu target's pipeline (its graph preparation included) gets there too
    from graphc.codegen.cpu.backend import CpuBackend
    from graphc.codegen.cpu.program import build_program_module
    pieces = build_program_module(lower_graph(CpuBackend().prepare(_graph()))).stats["pieces"]
    assert not [p for p in pieces if "select" in p]
    for variant in ("g_out", "other_r"):
        assert [len(x) for x in _folded(_graph(variant))] == [0, 1], variant


@pytest.mark.parametrize("variant,dtype,pool", [
    ("plain", f32, POOL), ("g_out", f32, POOL), ("other_r", f32, POOL),
    ("plain", f64, POOL),                                             # the loop fallback
    ("plain", f32, {"pool": (3, 3), "strides": (1, 1), "padding": ((1, 1), (1, 1))}),
])
def test_cpu_target_matches_interpreter(variant, dtype, pool):
    gr = _graph(variant, dtype, pool)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(-2, 3, size=v.shape).astype(dtype.np) for v in gr.inputs]
    got = get_backend("cpu").compile(gr)(arrays)
    for a, b in zip(got, interpret(gr, arrays)):
        np.testing.assert_array_equal(a, b)
