"""Decomposition: every non-primitive op lowers to primitives only (nested decompositions
included), results agree with the op's reference, and bad decompositions are reported."""
import numpy as np
import pytest

from graphc.errors import VerifyError
from graphc.ir import registry
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.registry import OpDef, all_ops, get_op
from graphc.passes import decompose
from graphc.passes.rewrite import as_list

F32 = DType.f32


from tests.passes.helpers import _arrays, assert_same_results  # noqa: F401


def _graph(shape=(2, 3)):
    g = Graph("t")
    x = g.add_input("x", TensorType(shape, F32))
    return g, x, g.builder


def _all_primitive(g):
    return all(get_op(n.op).primitive for n in g.nodes)


def test_relu_and_mean_lower_to_primitives():
    g, x, b = _graph()
    r = b.relu(x)
    g.set_outputs([r, b.reduce_mean(r, axes=(1,))], ["r", "m"])
    h = decompose(g)
    assert _all_primitive(h)
    assert h.op_counts() == {"constant": 2, "maximum": 1, "reduce_sum": 1, "mul": 1}
    assert h.output_names == ["r", "m"] and h.inputs == g.inputs
    # Mean as sum * (1/n) rounds differently from np.mean: close, not bit-equal.
    assert_same_results(g, h, exact=False)


def test_all_primitive_graph_is_returned_as_is():
    g, x, b = _graph()
    g.set_outputs([b.exp(x)])
    assert decompose(g) is g


def test_cut_decomposes_to_its_inputs():
    g, x, b = _graph()
    p, q = b.emit("cut", [b.neg(x), x], name="grads")
    g.set_outputs([b.add(p, q), q], ["s", "q"])
    h = decompose(g)
    assert h.op_counts() == {"neg": 1, "add": 1}
    assert h.outputs[1] is x
    assert_same_results(g, h)


@pytest.mark.parametrize("name", sorted(n for n, o in all_ops().items()
                                        if not o.primitive and o.sample is not None))
def test_every_non_primitive_op_lowers_and_agrees(name):
    """Registry-driven: each high-level op, on its own sampler's inputs, decomposes into
    primitives only and computes what its reference computes."""
    opdef = get_op(name)
    rng = np.random.default_rng(1234)
    for _ in range(3):
        arrays, attrs = opdef.sample(rng, np.float32)
        g = Graph(name)
        ins = [g.add_input(f"a{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
        outs = as_list(g.builder.emit(name, ins, attrs))
        g.set_outputs(outs)
        h = decompose(g)
        assert _all_primitive(h), h.op_counts()
        want = interpret(g, arrays)
        got = interpret(h, arrays)
        for w, o in zip(want, got):
            assert w.dtype == o.dtype and w.shape == o.shape
            np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- nesting, errors
# Temporary ops are added to the registry for one test only (monkeypatch undoes it), so
# registry-walking tests elsewhere never see them.

def _def(monkeypatch, name, decompose_fn, ref=np.negative, primitive=False):
    op = OpDef(name, infer=lambda types, attrs: types[0], ref=ref,
               arity=1, primitive=primitive, decompose=decompose_fn)
    monkeypatch.setitem(registry._REGISTRY, name, op)


def test_nested_decompositions_lower_fully(monkeypatch):
    # test_outer -> test_inner (non-primitive) -> neg; operator sugar must work inside.
    _def(monkeypatch, "test_inner", lambda b, ins, attrs: -ins[0])
    _def(monkeypatch, "test_outer", lambda b, ins, attrs: b.emit("test_inner", [b.exp(ins[0])]),
         ref=lambda x: -np.exp(x))
    g, x, b = _graph()
    y = b.emit("test_outer", [x])
    g.set_outputs([y, b.emit("test_inner", [y])])
    h = decompose(g)
    assert h.op_counts() == {"exp": 1, "neg": 2}
    assert_same_results(g, h)


def test_decomposition_cycle_is_reported(monkeypatch):
    _def(monkeypatch, "test_ping", lambda b, ins, attrs: b.emit("test_pong", ins))
    _def(monkeypatch, "test_pong", lambda b, ins, attrs: b.emit("test_ping", ins))
    g, x, b = _graph()
    g.set_outputs([b.emit("test_ping", [x])])
    with pytest.raises(VerifyError, match="cycle"):
        decompose(g)


def test_missing_decomposition_is_reported(monkeypatch):
    _def(monkeypatch, "test_nodecomp", None)
    g, x, b = _graph()
    g.set_outputs([b.emit("test_nodecomp", [x])])
    with pytest.raises(VerifyError, match="test_nodecomp"):
        decompose(g)


def test_decomposition_with_wrong_type_is_reported(monkeypatch):
    _def(monkeypatch, "test_badtype", lambda b, ins, attrs: b.reduce_sum(ins[0], axes=(0,)))
    g, x, b = _graph()
    g.set_outputs([b.emit("test_badtype", [x])])
    with pytest.raises(VerifyError, match="test_badtype"):
        decompose(g)
