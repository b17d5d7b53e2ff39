"""The IR verifier: well-formed graphs pass; each kind of malformed graph raises
``VerifyError`` whose message names the offending node by index, op and printed result."""
from __future__ import annotations

import numpy as np
import pytest

from graphc.errors import VerifyError
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph, Value
from graphc.ir.parser import parse
from graphc.ir.printer import print_graph
from graphc.ir.verifier import verify

f32 = DType.f32


def good() -> Graph:
    """%0 = matmul, %1 = add, %2 = relu, %3 = reduce_sum; outputs y=%2, loss=%3."""
    g = Graph("g")
    x = g.add_input("x", TensorType((4, 3), f32))
    w = g.add_param("dense.kernel", TensorType((3, 2), f32))
    bias = g.add_param("dense.bias", TensorType((2,), f32))
    b = g.builder
    h = b.relu(b.add(b.matmul(x, w), bias))
    loss = b.reduce_sum(h, axes=(0, 1))
    g.set_outputs([h, loss], ["y", "loss"])
    return g


def raises(g: Graph, *fragments: str) -> str:
    with pytest.raises(VerifyError) as err:
        verify(g)
    msg = str(err.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def test_good_graphs_pass():
    g = good()
    verify(g)
    verify(parse(print_graph(g)))
    verify(Graph("empty"))


def test_use_before_definition():
    g = good()
    g.nodes[1], g.nodes[2] = g.nodes[2], g.nodes[1]     # relu before the add it reads
    raises(g, "node 1 (%1 = relu)", "input 0 %2 is used before it is defined",
           "by node 2 (%2 = add)")


def test_value_from_another_graph():
    g = good()
    stranger = good().nodes[0].output
    g.nodes[1].inputs[0] = stranger
    raises(g, "node 1 (%1 = add)", "is not defined in the graph")


def test_value_defined_twice():
    g = good()
    g.nodes.insert(3, g.nodes[1])                        # the same add node twice
    raises(g, "node 3 (%3 = add)", "defined twice", "node 1 (%1 = add)")


def test_node_result_that_is_a_graph_input():
    g = good()
    g.nodes[0].outputs[0] = g.inputs[0]
    raises(g, "node 0 (%0 = matmul)", "already a graph input/param")


def test_stale_output_back_pointer():
    g = good()
    g.nodes[2].outputs[0].index = 1
    raises(g, "node 2 (%2 = relu)", "does not point back")


def test_unknown_op():
    g = good()
    g.nodes[2].op = "relu6"
    raises(g, "node 2 (%2 = relu6)", "unknown op 'relu6'")


def test_unknown_attribute():
    g = good()
    g.nodes[3].attrs["bogus"] = 1
    raises(g, "node 3 (%3 = reduce_sum)", "bad attributes", "bogus")


def test_missing_required_attribute():
    g = good()
    del g.nodes[3].attrs["axes"]
    raises(g, "node 3 (%3 = reduce_sum)", "bad attributes", "axes")


def test_missing_defaulted_attribute():
    g = good()
    del g.nodes[3].attrs["keepdims"]
    raises(g, "node 3 (%3 = reduce_sum)", "['keepdims'] missing")


def test_attribute_the_shape_rule_rejects():
    g = good()
    g.nodes[3].attrs["axes"] = (0, 5)
    raises(g, "node 3 (%3 = reduce_sum)", "shape rule rejects")


def test_output_type_disagrees_with_shape_rule():
    g = good()
    g.nodes[0].outputs[0].type = TensorType((4, 3), f32)
    msg = raises(g, "node 0 (%0 = matmul)", "f32[4,3]", "f32[4,2]")
    assert "disagree" in msg or "rejects" in msg


def test_output_dtype_disagrees():
    g = good()
    g.nodes[2].outputs[0].type = TensorType((4, 2), DType.f64)
    raises(g, "node 2 (%2 = relu)", "output types f64[4,2] disagree", "f32[4,2]")


def test_wrong_output_count():
    g = good()
    n = g.nodes[2]
    n.outputs.append(Value(TensorType((4, 2), f32), None, n, 1))
    raises(g, "node 2 (%2, %3 = relu)", "disagree")


def test_wrong_arity():
    g = good()
    g.nodes[2].inputs.append(g.inputs[0])
    raises(g, "node 2 (%2 = relu)", "takes 1 input(s), got 2")


def test_input_types_the_rule_rejects():
    g = good()
    g.nodes[1].inputs[1] = g.inputs[0]                  # add(f32[4,2], f32[4,3])
    raises(g, "node 1 (%1 = add)", "shape rule rejects", "f32[4,3]")


def test_duplicate_input_and_param_names():
    g = good()
    g.add_input("x", TensorType((1,), f32))
    raises(g, "duplicate input name %x")
    g = good()
    g.add_param("x", TensorType((1,), f32))
    raises(g, "duplicate param name %x", "already a graph input")


def test_nameless_input():
    g = good()
    g.inputs.append(Value(TensorType((1,), f32)))
    raises(g, "has no name")


def test_graph_output_not_defined():
    g = good()
    g.outputs[1] = good().outputs[1]
    raises(g, "output 1 (loss)", "is not defined in the graph")


def test_output_names_length_mismatch():
    g = good()
    g.output_names.append("extra")
    raises(g, "2 output(s) but 3 output name(s)")


def test_duplicate_output_names():
    g = good()
    g.output_names = ["y", "y"]
    raises(g, "duplicate output name(s) ['y']")


def test_message_names_graph_and_multi_output_results():
    g = Graph("train")
    x = g.add_input("x", TensorType((2, 2), f32))
    b = g.builder
    a = b.neg(x)
    c = b.argmax(a, axis=0)
    g.set_outputs([c])
    verify(g)
    g.nodes[1].attrs["axis"] = 7
    raises(g, "@train: node 1 (%1 = argmax)", "axis 7")


def test_constant_value_type_mismatch():
    g = Graph("c")
    v = g.builder.const(np.zeros((2, 3), np.float32))
    g.set_outputs([v])
    verify(g)
    g.nodes[0].attrs["value"] = np.zeros((3,), np.int64)
    raises(g, "node 0 (%0 = constant)", "output types f32[2,3] disagree", "i64[3]")
