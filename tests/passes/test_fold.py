"""Constant folding: constant-input nodes with small results become constants, evaluated
with the op's numpy reference (bit-identical to the interpreter); large results stay ops."""
import warnings

import numpy as np
import pytest

from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.printer import print_graph
from graphc.passes import dce, fold

F32 = DType.f32


from tests.passes.helpers import _arrays, assert_same_results  # noqa: F401


def _graph():
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 3), F32))
    return g, x, g.builder


def _c(b, a, dtype=None):
    return b.const(np.asarray(a), dtype)


def test_constant_chain_folds_to_one_constant():
    g, x, b = _graph()
    c = b.add(_c(b, [1.0, 2.0, 3.0]), _c(b, 2.0))
    d = b.exp(b.neg(c))
    g.set_outputs([b.mul(x, d), d], ["y", "d"])
    h = fold(g)
    # The folded-away constants are dead but still there: removing them is DCE's job.
    assert dce(h).op_counts() == {"constant": 1, "mul": 1}
    assert h.outputs[1].node.op == "constant"
    np.testing.assert_array_equal(h.outputs[1].node.attrs["value"],
                                  np.exp(-(np.float32([1, 2, 3]) + np.float32(2))))
    assert_same_results(g, h)


def test_node_with_a_non_constant_input_does_not_fold():
    g, x, b = _graph()
    g.set_outputs([b.add(x, _c(b, 1.0))])
    assert fold(g) is g


def test_size_limit():
    g, x, b = _graph()
    row = _c(b, np.arange(32, dtype=np.float32))
    small = b.broadcast_to(row, shape=(32, 32))   # 1024 elements: folds
    big = b.broadcast_to(row, shape=(33, 32))     # 1056 elements: stays an op
    g.set_outputs([small, big])
    h = fold(g)
    assert [v.node.op for v in h.outputs] == ["constant", "broadcast_to"]
    assert h.outputs[1].node.inputs[0] is h.nodes[0].outputs[0]
    assert_same_results(g, h)
    # The limit is a parameter.
    assert fold(g, limit=4) is g


# ------------------------------------------------------------------- splats

def _splat_of(v):
    """The scalar of a ``broadcast_to(constant(s))`` value (asserting that form)."""
    assert v.node.op == "broadcast_to" and v.node.inputs[0].node.op == "constant"
    s = v.node.inputs[0].node.attrs["value"]
    assert s.shape == ()
    return s


def test_uniform_literals_become_splats():
    g, x, b = _graph()
    twos = _c(b, np.full((2, 3), 2.0, np.float32))
    nans = _c(b, np.full((4,), np.nan, np.float32))
    zeros = _c(b, np.array([0.0, -0.0], np.float32))   # different bits: not a splat
    one = _c(b, np.ones((1,), np.float32))              # one element: stays a literal
    g.set_outputs([b.mul(x, twos), nans, zeros, one])
    h = fold(g)
    assert _splat_of(h.outputs[0].node.inputs[1]) == 2.0
    assert np.isnan(_splat_of(h.outputs[1]))
    assert [v.node.op for v in h.outputs[2:]] == ["constant", "constant"]
    assert_same_results(g, h)
    clean = dce(h)
    assert fold(clean) is clean  # splats are a fixed point


def test_splat_inputs_fold_and_uniform_results_stay_splats():
    g, x, b = _graph()
    zero = b.broadcast_to(_c(b, 0.0), shape=(2, 3))
    ex = b.exp(zero)                                     # all ones: a splat
    mixed = b.add(zero, _c(b, [1.0, 2.0, 3.0]))           # not uniform: a literal
    big = b.broadcast_to(_c(b, 1.0), shape=(100, 100))   # too big to fold ...
    total = b.reduce_sum(big, axes=(0, 1))               # ... but its sum folds
    g.set_outputs([b.add(x, ex), mixed, big, total])
    h = dce(fold(g))
    assert _splat_of(h.outputs[0].node.inputs[1]) == 1.0
    assert h.outputs[1].node.op == "constant"
    assert _splat_of(h.outputs[2]) == 1.0
    assert h.outputs[3].node.op == "constant" and h.outputs[3].node.attrs["value"] == 10000
    assert fold(h) is h
    assert_same_results(g, h)


def test_large_inputs_small_result_fold():
    g, x, b = _graph()
    big = _c(b, np.arange(5000, dtype=np.float32))
    s = b.reduce_sum(big, axes=(0,))
    g.set_outputs([b.add(x, s)])
    h = dce(fold(g))
    assert h.op_counts() == {"constant": 1, "add": 1}
    assert h.nodes[0].attrs["value"].shape == ()
    assert_same_results(g, h)


def test_shape_only_ops_fold():
    g, x, b = _graph()
    c = _c(b, np.arange(6, dtype=np.float32))
    r = b.transpose(b.reshape(c, shape=(3, 2)), perm=(1, 0))
    g.set_outputs([b.add(x, r)])
    h = dce(fold(g))
    assert h.op_counts() == {"constant": 1, "add": 1}
    assert_same_results(g, h)


def test_dtypes_are_kept():
    g, x, b = _graph()
    i = _c(b, np.array([1, 2, 3], np.int32))
    gt = b.greater(i, _c(b, np.int32(1)))
    f = b.cast(i, dtype=DType.f64)
    sel = b.select(gt, _c(b, 1.0), _c(b, 0.0))
    g.set_outputs([gt, f, sel, b.argmax(i, axis=0)])
    h = fold(g)
    assert [v.node.op for v in h.outputs] == ["constant"] * 4
    assert [v.dtype for v in h.outputs] == [DType.bool, DType.f64, DType.f32, DType.i64]
    assert_same_results(g, h)


def test_nan_results_fold_silently():
    g, x, b = _graph()
    y = b.log(_c(b, [-1.0, 0.0, 1.0]))
    g.set_outputs([y])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = fold(g)
    v = h.outputs[0].node.attrs["value"]
    assert np.isnan(v[0]) and np.isneginf(v[1]) and v[2] == 0
    with np.errstate(all="ignore"):
        assert_same_results(g, h)


def test_cut_is_never_folded():
    g, x, b = _graph()
    c = b.emit("cut", [_c(b, 1.0)], name="grads")
    g.set_outputs([c])
    assert fold(g) is g


def test_random_uniform_with_constant_seed_folds_identically():
    g, x, b = _graph()
    r = b.random_uniform(_c(b, np.int64(42)), _c(b, np.int64(5)), shape=(4, 4), salt=3)
    g.set_outputs([r])
    h = fold(g)
    assert h.outputs[0].node.op == "constant"
    assert_same_results(g, h)


def test_multi_node_constant_subgraph_with_graph_outputs():
    g, x, b = _graph()
    m = b.matmul(_c(b, np.eye(3, dtype=np.float32)),
                 _c(b, np.arange(6, dtype=np.float32).reshape(3, 2)))
    s = b.reduce_max(m, axes=(1,), keepdims=True)
    g.set_outputs([m, s, b.add(x, b.reshape(s, shape=(3,)))], ["m", "s", "y"])
    h = dce(fold(g))
    assert h.op_counts() == {"constant": 3, "add": 1}
    assert h.output_names == ["m", "s", "y"]
    assert_same_results(g, h)


def test_folded_bool_literals_print():
    g, x, b = _graph()
    g.set_outputs([b.greater(_c(b, [1.0, 3.0]), _c(b, 2.0))])
    h = fold(g)
    assert "[false,true]" in print_graph(h)
