"""The IR text parser: ``parse(print_graph(g))`` is structurally equal to ``g`` and prints back
to the same text, on hand-built graphs covering every attribute kind, multi-output nodes,
constants and odd names, and on random graphs built from the registry's samplers; malformed
text raises ``IRParseError`` naming the line and the offending text.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphc.errors import IRParseError
from graphc.ir import registry
from graphc.ir.compare import attrs_equal, first_difference, graphs_equal
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.parser import parse
from graphc.ir.printer import print_graph
from graphc.ir.registry import OpDef, all_ops, get_op
from graphc.ir.verifier import verify

f32, f64, i32, i64, u32 = DType.f32, DType.f64, DType.i32, DType.i64, DType.u32


def assert_round_trip(g: Graph) -> Graph:
    text = print_graph(g)
    back = parse(text)
    diff = first_difference(back, g)
    assert diff is None, f"{diff}\n--- printed:\n{text}"
    assert graphs_equal(back, g)
    assert print_graph(back) == text
    verify(back)
    return back


# ----------------------------------------------------------------------------- test-only ops
# Registered only for the duration of a test (monkeypatch restores the registry), so the
# registry walk never sees them.

def _split_infer(types, attrs):
    t = types[0]
    n = attrs["parts"]
    if t.rank == 0 or t.shape[-1] % n:
        raise ValueError(f"test.split: cannot split {t} in {n}")
    piece = t.with_shape(t.shape[:-1] + (t.shape[-1] // n,))
    return [piece] * n + [TensorType((), DType.i64)]


def _split_ref(x, parts):
    return tuple(np.split(x, parts, axis=-1)) + (np.array(parts, dtype=np.int64),)


KINDS = {"i": 0, "big": 0, "f": 0.0, "tiny": 0.0, "nan": 0.0, "inf": 0.0, "ninf": 0.0,
         "negzero": 0.0, "s": "", "t": False, "fl": True, "n": 0, "dt": f32, "nested": (),
         "empty": (1,), "dts": ()}


@pytest.fixture
def test_ops(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "test.split", OpDef(
        "test.split", _split_infer, _split_ref, arity=1, attrs={"parts": 2}))
    monkeypatch.setitem(registry._REGISTRY, "test.attrs", OpDef(
        "test.attrs", lambda types, attrs: types[0], lambda x, **_: x, arity=1,
        attrs=dict(KINDS)))
    monkeypatch.setitem(registry._REGISTRY, "test.sink", OpDef(
        "test.sink", lambda types, attrs: [], lambda *xs: (), arity=None))


# ----------------------------------------------------------------------------- hand-built graphs

def mlp() -> Graph:
    g = Graph("predict")
    x = g.add_input("x", TensorType((32, 784), f32))
    k = g.add_param("dense_1.kernel", TensorType((784, 64), f32))
    b_ = g.add_param("dense_1.bias", TensorType((64,), f32))
    m = g.add_param("opt.m:dense_1.kernel", TensorType((784, 64), f32))
    b = g.builder
    h = b.relu(b.add(b.matmul(x, k), b_))
    loss = b.reduce_mean(h, axes=(0, 1))
    new_m = b.add(b.mul(m, 0.9), b.mul(k, 0.1))
    g.set_outputs([h, loss, new_m], [None, "loss", "new:opt.m:dense_1.kernel"])
    return g


def test_mlp_round_trip():
    g = mlp()
    text = print_graph(g)
    assert "%opt.m:dense_1.kernel: f32[784,64]" in text
    assert "return %2, loss=%3, new:opt.m:dense_1.kernel=" in text
    assert_round_trip(g)


def test_design_doc_example_parses():
    text = """graph @predict(%x: f32[32,784]) params(%dense.kernel: f32[784,64], %dense.bias: f32[64]) {
  %0 = matmul(%x, %dense.kernel) : f32[32,64]
  %1 = add(%0, %dense.bias) : f32[32,64]
  %2 = relu(%1) : f32[32,64]
  return %2
}
"""
    g = parse(text)
    assert print_graph(g) == text
    assert [n.op for n in g.nodes] == ["matmul", "add", "relu"]
    assert g.params[0].name == "dense.kernel"
    assert g.outputs[0] is g.nodes[2].output


def test_constants_of_several_shapes_and_dtypes():
    g = Graph("consts")
    b = g.builder
    values = [
        np.float32(1.5),
        np.array([np.nan, np.inf, -np.inf, -0.0, 1e-30, 1e30, 0.1], np.float64),
        np.array([[1, -2, 3], [4, 5, -6]], np.int32),
        np.arange(24, dtype=np.int64).reshape(2, 3, 4) - 10**12,
        np.array([0, 1, 2**32 - 1], np.uint32),
        np.zeros((0,), np.float32),
        np.zeros((2, 0, 3), np.float64),
        np.random.default_rng(0).standard_normal((3, 1, 2)).astype(np.float32),
        np.array(7, np.int64),
        np.array(True),
    ]
    outs = [b.const(v, DType.of(v.dtype)) for v in values]
    g.set_outputs(outs)
    back = assert_round_trip(g)
    for node, v in zip(back.nodes, values):
        got = node.attrs["value"]
        assert got.dtype == v.dtype and got.shape == v.shape
        np.testing.assert_array_equal(got, v)
    # float32 values survive the text exactly (printed at float64 precision).
    assert back.nodes[7].attrs["value"].tobytes() == values[7].tobytes()


def test_bool_array_constant_round_trip():
    g = Graph("bools")
    g.set_outputs([g.builder.const(np.array([[True, False], [False, True]]))])
    assert_round_trip(g)


def test_bool_array_constant_parses():
    g = parse("graph @b() {\n  %0 = constant() {value=[[true,false],[false,true]]} : bool[2,2]\n"
              "  return %0\n}\n")
    v = g.nodes[0].attrs["value"]
    assert v.dtype == np.bool_
    np.testing.assert_array_equal(v, [[True, False], [False, True]])


def test_empty_constant_with_leading_zero_dim():
    g = parse("graph @e() {\n  %0 = constant() {value=[]} : f32[0,3]\n  return %0\n}\n")
    assert g.nodes[0].attrs["value"].shape == (0, 3)


def test_multi_output_nodes(test_ops):
    g = Graph("multi")
    x = g.add_input("x", TensorType((2, 6), f32))
    b = g.builder
    a, c, d, n = b.emit("test.split", [x], parts=3)
    s = b.add(a, d)
    p, q, m = b.emit("test.split", [s], parts=2)
    g.set_outputs([c, q, n, m], ["c", None, "n", "m"])
    text = print_graph(g)
    assert "%0, %1, %2, %3 = test.split(%x) {parts=3} : f32[2,2], f32[2,2], f32[2,2], i64[]" \
        in text
    back = assert_round_trip(g)
    assert back.outputs[0] is back.nodes[0].outputs[1]
    assert back.outputs[1] is back.nodes[2].outputs[1]


def test_zero_output_node(test_ops):
    g = Graph("sink")
    x = g.add_input("x", TensorType((2,), f32))
    g.builder.emit("test.sink", [x, x])
    g.set_outputs([x])
    assert "   = test.sink(%x, %x) : \n" in print_graph(g)
    assert_round_trip(g)


def test_attributes_of_every_kind(test_ops):
    attrs = {"i": -3, "big": 2**70, "f": 1.5e-300, "tiny": 5e-324, "nan": math.nan,
             "inf": math.inf, "ninf": -math.inf, "negzero": -0.0,
             "s": 'he said "hi" \\ back\nslash\ttab ünï {x=1}, %y',
             "t": True, "fl": False, "n": None, "dt": u32,
             "nested": ((1, 2), (3, (4.5, "x", ())), ()), "empty": (),
             "dts": (f32, f64, i32, i64, u32, DType.bool)}
    g = Graph("attrs.every_kind")
    x = g.add_input("x", TensorType((3,), f32))
    g.set_outputs([g.builder.emit("test.attrs", [x], attrs)])
    back = assert_round_trip(g)
    got = back.nodes[0].attrs
    for k, v in attrs.items():
        assert attrs_equal(got[k], v), k
        if isinstance(v, float) and not math.isnan(v):
            assert got[k] == v and type(got[k]) is float, k
    assert math.copysign(1.0, got["negzero"]) == -1.0
    assert type(got["i"]) is int and type(got["t"]) is bool and got["n"] is None
    assert isinstance(got["nested"], tuple) and got["dt"] is u32


def test_names_with_dots_colons_and_digits():
    names = ["dense_1.kernel", "opt.m:dense.kernel", "a.b.c", "x_0:1", "block/conv-2.w", "_"]
    g = Graph("train.step_1")
    vals = [g.add_input(n, TensorType((2,), f32)) for n in names]
    b = g.builder
    acc = vals[0]
    for v in vals[1:]:
        acc = b.add(acc, v)
    g.set_outputs([acc], ["new:dense_1.kernel"])
    back = assert_round_trip(g)
    assert [v.name for v in back.inputs] == names
    assert back.output_names == ["new:dense_1.kernel"]


def test_quoted_names_parse():
    g = parse('graph @"my graph"(%"odd name": f32[2]) {\n'
              '  %0 = neg(%"odd name") : f32[2]\n  return "out put"=%0\n}\n')
    assert g.name == "my graph" and g.inputs[0].name == "odd name"
    assert g.output_names == ["out put"]


def test_empty_graph_and_params_only():
    g = Graph("nothing")
    assert_round_trip(g)
    g = Graph("state")
    p = g.add_param("step", TensorType((), i64))
    g.set_outputs([g.builder.add(p, 1)], ["step"])
    assert_round_trip(g)


def test_hand_written_names_and_whitespace():
    text = ("graph @f(%x: f32[2])\n{\n  %h=exp(%x):f32[2]\n  %y = mul( %h , %x )  :  f32[2]"
            "\n  return y = %y }")
    g = parse(text)
    assert [n.op for n in g.nodes] == ["exp", "mul"]
    assert g.output_names == ["y"]


def test_missing_default_attribute_is_filled():
    g = parse("graph @r(%x: f32[2,3]) {\n  %0 = reduce_sum(%x) {axes=[1]} : f32[2]\n"
              "  return %0\n}\n")
    assert g.nodes[0].attrs == {"axes": (1,), "keepdims": False}


# ----------------------------------------------------------------------------- graphs_equal

def _variant(change: str) -> Graph:
    g = Graph("v")
    x = g.add_input("x", TensorType((2, 3), f32))
    y = g.add_input("y" if change != "input name" else "z", TensorType((2, 3), f32))
    b = g.builder
    c = b.const(np.array([1.0, np.nan, 3.0], np.float32 if change != "const dtype" else np.float64)
                if change != "const value" else np.array([1.0, np.nan, 4.0], np.float32))
    s = b.add(x, y) if change != "wiring" else b.add(y, x)
    if change == "const dtype":
        c = b.cast(c, dtype=f32)
    m = b.mul(s, c)
    r = b.reduce_sum(m, axes=(1,), keepdims=change == "attr")
    g.set_outputs([r, s] if change != "outputs" else [s, r],
                  ["r", None] if change != "output names" else ["r", "s"])
    return g


@pytest.mark.parametrize("change", ["input name", "const dtype", "const value", "wiring",
                                    "attr", "outputs", "output names"])
def test_graphs_equal_detects_differences(change):
    base = _variant("none")
    assert graphs_equal(base, _variant("none"))    # NaN in a constant equals itself
    other = _variant(change)
    assert not graphs_equal(base, other)
    assert first_difference(base, other) is not None


def test_attrs_equal_is_strict_about_kinds():
    assert attrs_equal((1, 2), [1, 2]) and attrs_equal(np.int64(3), 3)
    assert not attrs_equal(1, 1.0) and not attrs_equal(True, 1) and not attrs_equal(0, None)
    assert attrs_equal(math.nan, float("nan")) and not attrs_equal(math.nan, 0.0)
    assert not attrs_equal(np.zeros(2, np.float32), np.zeros(2, np.float64))
    assert not attrs_equal(np.zeros(2), (0.0, 0.0))
    assert attrs_equal(f32, DType.f32) and not attrs_equal(f32, "f32")


# ----------------------------------------------------------------------------- errors

GOOD = """graph @g(%x: f32[2,3]) {
  %0 = exp(%x) : f32[2,3]
  %1 = reduce_sum(%0) {axes=[1], keepdims=false} : f32[2]
  return %1
}
"""


@pytest.mark.parametrize("old, new, line, fragment", [
    ("exp(%x)", "exp(%x #)", 2, "'#'"),                          # bad token
    ("exp(%x)", "expp(%x)", 2, "unknown op 'expp'"),
    ("%1 = reduce_sum(%0) {axes=[1], keepdims=false} : f32[2]",
     "%1 = reduce_sum(%0) {axes=[1], keepdims=false} : f32[3]", 3, "type mismatch"),
    (": f32[2]\n", ": i32[2]\n", 3, "type mismatch"),
    ("exp(%x)", "exp(%y)", 2, "undefined value %y"),
    ("%1 = reduce", "%0 = reduce", 3, "defined twice"),
    ("exp(%x)", "exp(%x, %x)", 2, "expected 1 input"),
    ("keepdims=false", "keepdims=false, bogus=1", 3, "unknown attribute"),
    ("{axes=[1], keepdims=false}", "{keepdims=false}", 3, "missing required attribute"),
    ("axes=[1]", "axes=[1], axes=[0]", 3, "given twice"),
    ("axes=[1]", "axes=[9]", 3, "axes"),
    ("axes=[1]", "axes=[1 2]", 3, "expected ',' or ']'"),
    ("keepdims=false", "keepdims=maybe", 3, "unknown attribute word 'maybe'"),
    ("keepdims=false", 'keepdims="oops', 3, "unterminated string"),
    (": f32[2,3]\n  %1", ": f32[2,3], f32[1]\n  %1", 2, "1 result(s) but 2 type(s)"),
    (": f32[2,3]\n  %1", ": q32[2,3]\n  %1", 2, "expected a type"),
    ("f32[2,3]) {", "f32[2,-3]) {", 1, "negative dimension"),
    ("  return %1\n", "", 4, "expected a node or 'return'"),
    ("}\n", "}\n}\n", 6, "end of input"),
    ("graph @g", "grph @g", 1, "expected 'graph'"),
    ("return %1", "return %7", 4, "undefined value %7"),
    ("return %1", "return out=", 5, "expected a value"),
    ("keepdims=false", "keepdims=1.5e", 3, "malformed number"),
    ("keepdims=false", 'keepdims="a\\q"', 3, "bad escape"),
])
def test_parse_errors_name_the_line(old, new, line, fragment):
    assert old in GOOD
    bad = GOOD.replace(old, new, 1)
    with pytest.raises(IRParseError) as err:
        parse(bad)
    msg = str(err.value)
    assert f"line {line}," in msg, msg
    assert fragment in msg, msg
    src_line = bad.splitlines()[line - 1] if line <= len(bad.splitlines()) else ""
    assert src_line in msg, msg   # the offending source line is quoted


@pytest.mark.parametrize("value, type_, fragment", [
    ("[1.5,2]", "i32[2]", "does not fit dtype i32"),
    ("[1,2,3]", "f32[2]", "shape [3]"),
    ("[[1,2],[3]]", "f32[2,2]", "cannot build"),
    ("-1", "u32[]", "cannot build"),
    ("1", "bool[]", "does not fit dtype bool"),
    ("nan", "i64[]", "does not fit"),
])
def test_bad_constant_values(value, type_, fragment):
    with pytest.raises(IRParseError) as err:
        parse(f"graph @c() {{\n  %0 = constant() {{value={value}}} : {type_}\n  return %0\n}}\n")
    assert "line 2," in str(err.value) and fragment in str(err.value), str(err.value)


def test_parse_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse("graph")


# ----------------------------------------------------------------------------- random graphs

SAMPLED_OPS = sorted(n for n, d in all_ops().items() if d.sample is not None)
NAME_STEMS = ["x", "dense_1.kernel", "opt.m:dense.kernel", "block/conv-2.w", "y:0"]


def random_graph(seed: int) -> Graph:
    """Chain random ops drawn from the registry; inputs of matching type are reused from
    earlier values so the wiring is non-trivial, the rest become graph inputs or params."""
    rng = np.random.default_rng(seed)
    g = Graph(f"random.{seed % 1000}")
    b = g.builder
    pool: dict[TensorType, list] = {}
    produced = []
    for k in range(int(rng.integers(1, 7))):
        opdef = get_op(SAMPLED_OPS[int(rng.integers(len(SAMPLED_OPS)))])
        arrays, attrs = opdef.sample(rng, [np.float32, np.float64][int(rng.integers(2))])
        args = []
        for j, a in enumerate(arrays):
            t = TensorType.of(a)
            if pool.get(t) and rng.random() < 0.7:
                args.append(pool[t][int(rng.integers(len(pool[t])))])
            else:
                name = f"{NAME_STEMS[int(rng.integers(len(NAME_STEMS)))]}.{k}_{j}"
                v = (g.add_param if rng.random() < 0.3 else g.add_input)(name, t)
                args.append(v)
        outs = b.emit(opdef.name, args, attrs)
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        for v in outs:
            pool.setdefault(v.type, []).append(v)
        produced += outs
    chosen = [v for v in produced if rng.random() < 0.6] or produced[-1:]
    names = [None if rng.random() < 0.5 else f"out{i}.v" for i in range(len(chosen))]
    g.set_outputs(chosen, names)
    return g


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_random_graphs_round_trip(seed):
    g = random_graph(seed)
    verify(g)
    assert_round_trip(g)


CORPUS = [GOOD, print_graph(mlp())]
JUNK = list("%@:=,()[]{}\"\\ \n.-e0159xf") + ["f32", "inf", "-inf", "nan", "return", "%0"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_text_fails_cleanly(data):
    """Any corruption of valid text either still parses into a verified graph or raises
    IRParseError — never a raw exception from inside the parser or an op's shape rule."""
    text = data.draw(st.sampled_from(CORPUS))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        j = min(len(text), i + data.draw(st.integers(0, 3)))
        text = text[:i] + data.draw(st.sampled_from(JUNK + [""])) + text[j:]
    try:
        g = parse(text)
    except IRParseError as e:
        assert str(e).startswith("line "), str(e)
    else:
        verify(g)
