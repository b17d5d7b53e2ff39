"""Dead-code elimination: dead chains go, live nodes and multi-output nodes with a used
output stay, graph inputs/params are never removed, results are unchanged."""
import numpy as np

from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.printer import print_graph
from graphc.passes import dce

F32 = DType.f32


from tests.passes.helpers import _arrays, assert_same_results  # noqa: F401


def _graph():
    g = Graph("t")
    x = g.add_input("x", TensorType((2, 3), F32))
    w = g.add_param("w", TensorType((3,), F32))
    return g, x, w, g.builder


def test_dead_chain_is_removed():
    g, x, w, b = _graph()
    live = b.add(x, w)
    dead = b.exp(b.neg(x))
    b.mul(dead, live)  # uses a live value but is itself dead
    g.set_outputs([b.tanh(live)], ["y"])
    before = print_graph(g)
    h = dce(g)
    assert h.op_counts() == {"add": 1, "tanh": 1}
    assert h.output_names == ["y"]
    assert print_graph(g) == before  # the source graph is untouched
    assert_same_results(g, h)


def test_all_live_returns_same_graph():
    g, x, w, b = _graph()
    g.set_outputs([b.add(x, w)], ["y"])
    assert dce(g) is g


def test_outputs_that_are_inputs_or_params():
    g, x, w, b = _graph()
    b.neg(x)
    g.set_outputs([x, w, x], ["a", "b", "c"])
    h = dce(g)
    assert h.nodes == []
    assert h.outputs == [x, w, x] and h.output_names == ["a", "b", "c"]
    assert h.inputs == [x] and h.params == [w]
    assert_same_results(g, h)


def test_unused_inputs_and_params_stay():
    g, x, w, b = _graph()
    c = b.const(np.ones(3, np.float32))
    g.set_outputs([c], ["one"])
    h = dce(g)
    assert [v.name for v in h.inputs] == ["x"] and [v.name for v in h.params] == ["w"]
    assert h.op_counts() == {"constant": 1}


def test_multi_output_node_stays_if_any_output_is_used():
    g, x, w, b = _graph()
    p, q = b.emit("cut", [b.neg(x), b.exp(w)], name="grads")
    g.set_outputs([p], ["p"])  # q unused, but the cut node produces p too
    h = dce(g)
    assert h.op_counts() == {"neg": 1, "exp": 1, "cut": 1}
    assert_same_results(g, h)


def test_multi_output_node_with_no_used_output_goes():
    g, x, w, b = _graph()
    b.emit("cut", [b.neg(x), b.exp(w)], name="grads")
    g.set_outputs([b.sqrt(b.abs(x))], ["y"])
    h = dce(g)
    assert h.op_counts() == {"abs": 1, "sqrt": 1}
    assert_same_results(g, h)


def test_node_feeding_output_directly_and_through_others():
    g, x, w, b = _graph()
    a = b.add(x, w)
    m = b.mul(a, a)
    b.sub(m, a)  # dead
    g.set_outputs([a, m], ["a", "m"])
    h = dce(g)
    assert h.op_counts() == {"add": 1, "mul": 1}
    assert_same_results(g, h)


def test_empty_graph():
    g = Graph("empty")
    g.set_outputs([])
    assert dce(g) is g
