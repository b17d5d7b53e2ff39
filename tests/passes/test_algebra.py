"""Algebraic simplification: every rule, where it fires and where it must not (broadcast
widening, float x*0, integer x/1, mixed select conditions), with results unchanged."""
import numpy as np
import pytest

from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.passes import algebra, dce

F32 = DType.f32


from tests.passes.helpers import _arrays, assert_same_results  # noqa: F401


def _graph(*shapes, dtype=F32):
    g = Graph("t")
    xs = [g.add_input(f"x{i}", TensorType(s, dtype)) for i, s in enumerate(shapes)]
    return g, xs, g.builder


def _c(b, a, dtype=F32):
    return b.const(np.asarray(a), dtype)


def _simplified(g):
    """algebra, then DCE so op counts show what survives."""
    h = dce(algebra(g))
    assert_same_results(g, h)
    return h


# ------------------------------------------------------------------- x*1, x+0, x-0, x/1

@pytest.mark.parametrize("op,k,swap", [("mul", 1.0, False), ("mul", 1.0, True),
                                       ("add", 0.0, False), ("add", 0.0, True),
                                       ("add", -0.0, False), ("sub", 0.0, False),
                                       ("div", 1.0, False)])
def test_identity_element_fires(op, k, swap):
    g, (x,), b = _graph((2, 3))
    c = _c(b, k)
    y = b.emit(op, [c, x] if swap else [x, c])
    g.set_outputs([y], ["y"])
    h = _simplified(g)
    assert h.nodes == [] and h.outputs == [x] and h.output_names == ["y"]


@pytest.mark.parametrize("op,k", [("sub", 0.0), ("div", 1.0)])
def test_non_commuted_forms_do_not_fire(op, k):
    # 0 - x is -x (not x), 1 / x is a reciprocal.
    g, (x,), b = _graph((2, 3))
    g.set_outputs([b.emit(op, [_c(b, k), x])])
    assert algebra(g) is g


def test_identity_with_constant_that_broadcasts_to_x():
    g, (x,), b = _graph((2, 3))
    g.set_outputs([b.mul(x, _c(b, np.ones(3))), b.add(_c(b, np.zeros((1, 3))), x)])
    h = _simplified(g)
    assert h.nodes == [] and h.outputs == [x, x]


def test_identity_does_not_fire_when_the_constant_widens_x():
    # x: [3] * ones[2,3] is [2,3]: returning x would change the shape.
    g, (x,), b = _graph((3,))
    g.set_outputs([b.mul(x, _c(b, np.ones((2, 3)))), b.add(x, _c(b, np.zeros((4, 1))))])
    assert algebra(g) is g


def test_identity_sees_through_broadcast_of_a_constant():
    g, (x,), b = _graph((64, 64))
    ones = b.broadcast_to(_c(b, 1.0), shape=(64, 64))  # too big to fold, still all ones
    g.set_outputs([b.mul(x, ones)])
    h = _simplified(g)
    assert h.nodes == [] and h.outputs == [x]


def test_not_all_ones_does_not_fire():
    g, (x,), b = _graph((3,))
    g.set_outputs([b.mul(x, _c(b, [1.0, 1.0, 2.0])), b.add(x, _c(b, [0.0, 1e-30, 0.0]))])
    assert algebra(g) is g


def test_float_times_zero_is_kept():
    # nan*0 = nan, inf*0 = nan, -3*0 = -0: x*0 is not 0 for floats.
    g, (x,), b = _graph((3,))
    g.set_outputs([b.mul(x, _c(b, 0.0)), b.mul(_c(b, 0.0), x)])
    assert algebra(g) is g


def test_integer_times_zero_is_zero():
    g, (x, y), b = _graph((2, 3), (3,), dtype=DType.i32)
    z = b.mul(x, _c(b, 0, DType.i32))
    w = b.mul(_c(b, np.zeros((2, 3)), DType.i32), y)  # result wider than y: broadcast zeros
    g.set_outputs([z, w])
    h = _simplified(g)
    assert "mul" not in h.op_counts()
    assert [v.shape for v in h.outputs] == [(2, 3), (2, 3)]


def test_integer_division_is_rejected():
    # div is float-only (integer true division would silently truncate), so the
    # x / 1 rule never meets integers.
    from graphc.errors import DTypeError
    g, (x,), b = _graph((3,), dtype=DType.i64)
    with pytest.raises(DTypeError, match="div"):
        b.div(x, _c(b, 1, DType.i64))


def test_integer_identities():
    g, (x,), b = _graph((3,), dtype=DType.i64)
    g.set_outputs([b.add(x, _c(b, 0, DType.i64)), b.mul(_c(b, 1, DType.i64), x)])
    h = _simplified(g)
    assert h.nodes == [] and h.outputs == [x, x]


def test_signed_zero_is_the_only_difference_of_x_plus_zero():
    g, (x,), b = _graph((2,))
    g.set_outputs([b.add(x, _c(b, 0.0))])
    h = algebra(g)
    xs = [np.array([-0.0, 1.5], np.float32)]
    before, after = interpret(g, xs)[0], interpret(h, xs)[0]
    np.testing.assert_array_equal(before, after)  # -0.0 == +0.0
    assert np.signbit(after[0]) and not np.signbit(before[0])  # documented liberty


# ------------------------------------------------------------------- neg, transpose, reshape

def test_double_negation():
    g, (x,), b = _graph((2, 3))
    n1 = b.neg(x)
    g.set_outputs([b.neg(n1), n1, b.neg(b.neg(b.neg(b.neg(x))))])
    h = _simplified(g)
    assert h.op_counts() == {"neg": 1}
    assert h.outputs[0] is x and h.outputs[2] is x


def test_transpose_pairs_compose():
    g, (x,), b = _graph((2, 3, 4))
    t = b.transpose(b.transpose(x, perm=(1, 2, 0)), perm=(1, 0, 2))
    g.set_outputs([t])
    h = _simplified(g)
    assert h.op_counts() == {"transpose": 1}
    assert h.nodes[0].inputs == [x]
    assert h.nodes[0].attrs["perm"] == (2, 1, 0)


def test_inverse_transposes_and_identity_perm_vanish():
    g, (x,), b = _graph((2, 3, 4))
    t = b.transpose(x, perm=(1, 2, 0))
    back = b.transpose(t, perm=(2, 0, 1))
    ident = b.transpose(x, perm=(0, 1, 2))
    g.set_outputs([back, ident, b.transpose(b.transpose(b.transpose(x, perm=(1, 0, 2)),
                                                        perm=(2, 1, 0)), perm=(0, 2, 1))])
    h = _simplified(g)
    assert h.outputs[0] is x and h.outputs[1] is x
    assert h.op_counts() == {"transpose": 1}  # three transposes composed into one
    assert h.nodes[0].inputs == [x] and h.nodes[0].attrs["perm"] == (2, 1, 0)


def test_single_transpose_is_kept():
    g, (x,), b = _graph((2, 3))
    g.set_outputs([b.transpose(x, perm=(1, 0))])
    assert algebra(g) is g


def test_reshape_rules():
    g, (x,), b = _graph((2, 3, 4))
    r = b.reshape(b.reshape(x, shape=(6, 4)), shape=(4, 6))
    back = b.reshape(b.reshape(x, shape=(24,)), shape=(2, 3, 4))
    same = b.reshape(x, shape=(2, 3, 4))
    g.set_outputs([r, back, same])
    h = _simplified(g)
    assert h.op_counts() == {"reshape": 1}
    assert h.nodes[0].inputs == [x] and h.outputs[1] is x and h.outputs[2] is x


def test_reshape_of_a_shared_reshape_keeps_the_shared_one():
    g, (x,), b = _graph((2, 3, 4))
    r1 = b.reshape(x, shape=(6, 4))
    r2 = b.reshape(r1, shape=(24,))
    g.set_outputs([r1, r2])
    h = _simplified(g)
    assert h.op_counts() == {"reshape": 2}
    assert all(n.inputs == [x] for n in h.nodes)


def test_broadcast_rules():
    g, (x,), b = _graph((3,))
    same = b.broadcast_to(x, shape=(3,))
    twice = b.broadcast_to(b.broadcast_to(x, shape=(2, 3)), shape=(4, 2, 3))
    g.set_outputs([same, twice])
    h = _simplified(g)
    assert h.outputs[0] is x
    assert h.op_counts() == {"broadcast_to": 1} and h.nodes[0].inputs == [x]


def test_cast_to_same_dtype_only():
    g, (x,), b = _graph((3,))
    g.set_outputs([b.cast(x, dtype=DType.f32), b.cast(x, dtype=DType.f64)])
    h = _simplified(g)
    assert h.outputs[0] is x and h.op_counts() == {"cast": 1}


# ------------------------------------------------------------------- select

def test_select_with_constant_condition():
    g, (x, y), b = _graph((2, 3), (2, 3))
    t = b.select(_c(b, True, DType.bool), x, y)
    f = b.select(_c(b, np.zeros((2, 3), bool), DType.bool), x, y)
    g.set_outputs([t, f])
    h = _simplified(g)
    assert h.nodes == [] and h.outputs == [x, y]


def test_select_branch_is_broadcast_when_the_result_is_wider():
    g, (x, y), b = _graph((3,), (2, 3))
    t = b.select(_c(b, True, DType.bool), x, y)       # picks x: [3] -> [2,3]
    c = b.select(_c(b, np.ones((4, 1, 1), bool), DType.bool), y, y)  # cond widens
    g.set_outputs([t, c])
    h = _simplified(g)
    assert h.op_counts() == {"broadcast_to": 2}
    assert [v.shape for v in h.outputs] == [(2, 3), (4, 2, 3)]


def test_select_with_mixed_or_unknown_condition_is_kept():
    g, (x, y), b = _graph((3,), (3,))
    mixed = b.select(_c(b, [True, False, True], DType.bool), x, y)
    unknown = b.select(b.greater(x, y), x, y)
    g.set_outputs([mixed, unknown])
    assert algebra(g) is g


def test_rules_never_change_types():
    # Every rule replacement goes through Rewriter.replace, which rejects a type change.
    g, (x,), b = _graph((1, 3))
    g.set_outputs([b.mul(x, _c(b, np.ones((3, 1))))])  # [1,3]*[3,1] = [3,3]: must not fire
    h = algebra(g)
    assert h.outputs[0].shape == (3, 3)
    assert_same_results(g, h)
