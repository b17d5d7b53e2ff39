"""Common-subexpression elimination: exact equality only (bits for floats, dtype+shape+bytes
for arrays), commutative ops merge swapped, ``cut`` never merges."""
import numpy as np

from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.passes import cse
from graphc.passes.cse import attr_key, attrs_identical

F32 = DType.f32


from tests.passes.helpers import _arrays, assert_same_results  # noqa: F401


def _graph(shape=(2, 3)):
    g = Graph("t")
    x = g.add_input("x", TensorType(shape, F32))
    y = g.add_input("y", TensorType(shape, F32))
    return g, x, y, g.builder


def test_duplicates_merge_and_chains_collapse():
    g, x, y, b = _graph()
    a1, a2 = b.add(x, y), b.add(x, y)
    e1, e2 = b.exp(a1), b.exp(a2)
    g.set_outputs([b.mul(e1, e2), e2], ["p", "q"])
    h = cse(g)
    assert h.op_counts() == {"add": 1, "exp": 1, "mul": 1}
    assert h.outputs[1] is h.nodes[1].outputs[0]
    assert h.output_names == ["p", "q"]
    assert_same_results(g, h)


def test_commutative_ops_merge_swapped_others_do_not():
    g, x, y, b = _graph()
    outs = [b.add(x, y), b.add(y, x), b.mul(x, y), b.mul(y, x),
            b.sub(x, y), b.sub(y, x), b.maximum(x, y), b.maximum(y, x),
            b.equal(x, y), b.equal(y, x)]
    g.set_outputs(outs)
    h = cse(g)
    # maximum(0.0, -0.0) is -0.0 but maximum(-0.0, 0.0) is 0.0: order matters bitwise.
    assert h.op_counts() == {"add": 1, "mul": 1, "sub": 2, "maximum": 2, "equal": 1}
    assert_same_results(g, h)


def test_equal_constants_merge():
    g, x, y, b = _graph()
    c1 = b.const(np.arange(6, dtype=np.float32).reshape(2, 3))
    c2 = b.const(np.arange(6, dtype=np.float32).reshape(2, 3))
    big1 = b.const(np.full((50, 50), 0.5, np.float32))
    big2 = b.const(np.full((50, 50), 0.5, np.float32))
    g.set_outputs([b.add(x, c1), b.add(x, c2), big1, big2])
    h = cse(g)
    assert h.op_counts() == {"constant": 2, "add": 1}
    assert_same_results(g, h)


def test_constants_that_differ_do_not_merge():
    g, x, y, b = _graph()
    cs = [b.const(np.float32(0.0)), b.const(np.float32(-0.0)),     # differ in bits
          b.const(np.ones((1,), np.float32)), b.const(np.float32(1.0)),  # shape
          b.const(np.ones(3), DType.f64), b.const(np.ones(3), DType.f32),  # dtype
          b.const(np.ones((3,), np.int32)), b.const(np.ones((3,), bool)),
          b.const(np.array([1.0, 2.0], np.float32)), b.const(np.array([2.0, 1.0], np.float32))]
    g.set_outputs(cs)
    h = cse(g)
    assert h is g
    assert h.op_counts() == {"constant": len(cs)}


def test_identical_nan_constants_merge():
    g, x, y, b = _graph()
    g.set_outputs([b.add(x, b.const(np.float32(np.nan))), b.add(x, b.const(np.float32(np.nan)))])
    h = cse(g)
    assert h.op_counts() == {"constant": 1, "add": 1}
    assert_same_results(g, h)


def test_attributes_decide():
    g, x, y, b = _graph((2, 3, 4))
    t1 = b.transpose(x, perm=(2, 1, 0))
    t2 = b.transpose(x, perm=(2, 1, 0))
    t3 = b.transpose(x, perm=(1, 0, 2))
    s1 = b.reduce_sum(x, axes=(1,), keepdims=True)
    s2 = b.reduce_sum(x, axes=(1,), keepdims=False)
    s3 = b.reduce_sum(x, axes=[1], keepdims=True)  # list and tuple normalize alike
    g.set_outputs([t1, t2, t3, s1, s2, s3])
    h = cse(g)
    assert h.op_counts() == {"transpose": 2, "reduce_sum": 2}
    assert_same_results(g, h)


def test_cut_never_merges_but_random_uniform_does():
    g, x, y, b = _graph()
    c1 = b.emit("cut", [x], name="grads")
    c2 = b.emit("cut", [x], name="grads")
    seed = b.const(np.int64(7))
    step = b.const(np.int64(3))
    r1 = b.random_uniform(seed, step, shape=(2, 3), salt=1)
    r2 = b.random_uniform(seed, step, shape=(2, 3), salt=1)
    r3 = b.random_uniform(seed, step, shape=(2, 3), salt=2)
    g.set_outputs([c1, c2, r1, r2, r3])
    h = cse(g)
    assert h.op_counts() == {"cut": 2, "constant": 2, "random_uniform": 2}
    assert_same_results(g, h)


def test_no_duplicates_returns_same_graph():
    g, x, y, b = _graph()
    g.set_outputs([b.add(x, y), b.sub(x, y)])
    assert cse(g) is g


def test_attr_key_is_exact():
    assert attr_key(True) != attr_key(1)
    assert attr_key(0.0) != attr_key(-0.0)
    assert attr_key(float("nan")) == attr_key(float("nan"))
    assert attr_key((1, 2)) == attr_key([1, 2])
    a = np.arange(4, dtype=np.int32)
    assert attr_key(a) == attr_key(a.copy())
    assert attr_key(a) != attr_key(a.astype(np.int64))
    assert attr_key(a) != attr_key(a.reshape(2, 2))
    assert attrs_identical(a[::2], np.array([0, 2], np.int32))  # non-contiguous views
    assert not attrs_identical(a, a.astype(np.int64))
