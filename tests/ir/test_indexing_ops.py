"""gather / scatter_add semantics beyond the registry walk: out-of-range and negative
indices, duplicate accumulation, the adjoint identity that makes each the other's VJP,
autodiff through an embedding lookup, and the errors users can cause."""
from __future__ import annotations

import numpy as np
import pytest

from graphc.errors import DTypeError, ShapeError
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.registry import get_op
from graphc.passes.autodiff import gradients

try:
    from tests.ir.oracles_indexing import ORACLES
except ImportError:  # tests/ir is not a package: pytest put this folder on sys.path
    from oracles_indexing import ORACLES

RNG = np.random.default_rng(7)


def run(op, arrays, **attrs):
    opdef = get_op(op)
    attrs = opdef.normalize_attrs(attrs)
    g = Graph(op)
    xs = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    g.set_outputs([g.builder.emit(op, xs, attrs)])
    return interpret(g, arrays)[0]


def test_gather_rows_out_of_range_and_negative_give_zeros():
    params = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    idx = np.array([[0, 3, 3], [-1, 4, 1]], np.int32)
    y = run("gather", [params, idx])
    assert y.shape == (2, 3, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], params[0])
    np.testing.assert_array_equal(y[0, 1], params[3])
    np.testing.assert_array_equal(y[0, 2], params[3])
    np.testing.assert_array_equal(y[1, 0], 0)          # -1 does not wrap to the last row
    np.testing.assert_array_equal(y[1, 1], 0)          # 4 == input_dim: out of range
    np.testing.assert_array_equal(y[1, 2], params[1])


def test_gather_inner_axis_scalar_index_and_int_params():
    p = RNG.standard_normal((2, 5, 3)).astype(np.float64)
    idx = np.array([4, 0, 7], np.int64)
    y = run("gather", [p, idx], axis=1)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(y[:, :2], p[:, [4, 0]])
    np.testing.assert_array_equal(y[:, 2], 0)
    y0 = run("gather", [p, np.array(1, np.int32)], axis=0)   # rank-0 index drops the axis
    np.testing.assert_array_equal(y0, p[1])
    ip = np.arange(6, dtype=np.int32).reshape(3, 2)
    np.testing.assert_array_equal(run("gather", [ip, np.array([2, 2], np.int32)]),
                                  [[4, 5], [4, 5]])


def test_scatter_add_accumulates_duplicates_and_drops_out_of_range():
    upd = np.array([[1, 2], [10, 20], [100, 200], [5, 5], [7, 7]], np.float32)
    idx = np.array([2, 0, 2, -1, 3], np.int32)
    y = run("scatter_add", [upd, idx], shape=(3, 2))
    np.testing.assert_array_equal(y, [[10, 20], [0, 0], [101, 202]])
    np.testing.assert_array_equal(y, ORACLES["scatter_add"](upd, idx, (3, 2)))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_and_scatter_add_are_adjoint(axis):
    shape = (4, 3, 5)
    idx = RNG.integers(-1, shape[axis] + 1, size=(2, 3)).astype(np.int64)
    p = RNG.standard_normal(shape)
    y = run("gather", [p, idx], axis=axis)
    g = RNG.standard_normal(y.shape)
    s = run("scatter_add", [g, idx], shape=shape, axis=axis)
    np.testing.assert_allclose(np.sum(y * g), np.sum(p * s), rtol=1e-12)
    np.testing.assert_allclose(y, ORACLES["gather"](p, idx, axis), rtol=0, atol=0)


def test_autodiff_of_embedding_lookup_counts_duplicate_rows():
    # loss = sum(gather(E, idx) * w): dE[r] = sum of w over the positions that read row r.
    E = RNG.standard_normal((5, 2)).astype(np.float64)
    idx = np.array([[1, 1, 4], [1, 0, 9]], np.int32)
    w = RNG.standard_normal((2, 3, 2))
    g = Graph("emb")
    e = g.add_input("E", TensorType.of(E))
    i = g.add_input("idx", TensorType.of(idx))
    b = g.builder
    loss = b.reduce_sum(b.mul(b.gather(e, i), b.const(w, DType.f64)), axes=(0, 1, 2),
                        keepdims=False)
    dE, didx = gradients(g, loss, [e, i])
    assert didx is None                            # indices are not differentiable
    g.set_outputs([dE])
    got = interpret(g, [E, idx])[0]
    want = np.zeros_like(E)
    for pos in np.ndindex(idx.shape):
        if 0 <= idx[pos] < 5:
            want[idx[pos]] += w[pos]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got[1], w[0, 0] + w[0, 1] + w[1, 0])


def test_user_errors_name_the_op():
    f = TensorType((4, 3), DType.f32)
    with pytest.raises(DTypeError, match="gather: indices must be an integer"):
        get_op("gather").infer_types([f, TensorType((2,), DType.f32)], {"axis": 0})
    with pytest.raises(ShapeError, match="gather: axis 2 out of range"):
        get_op("gather").infer_types([f, TensorType((2,), DType.i32)], {"axis": 2})
    with pytest.raises(ShapeError, match=r"scatter_add: updates: expected shape \[2, 3\]"):
        get_op("scatter_add").infer_types([TensorType((2, 4), DType.f32),
                                           TensorType((2,), DType.i32)],
                                          {"shape": (4, 3), "axis": 0})
    with pytest.raises(ShapeError, match="scatter_add: missing required attribute 'shape'"):
        get_op("scatter_add").normalize_attrs({})
