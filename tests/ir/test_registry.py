"""Tests generated from the op registry: for EVERY registered op, its declaration is complete,
its shape rule agrees with its numpy semantics, the interpreter agrees with an independent
numpy oracle, its VJP agrees with central finite differences in float64, and (if it is not a
primitive) its decomposition agrees with its own semantics. Adding an op adds its tests.

Oracles come from every ``oracles_*.py`` module here (``oracles_basic.py``, ``oracles_nn.py``,
...), each exporting ``ORACLES``.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphc.ir.dtypes import TensorType
from graphc.ir.graph import Graph, building
from graphc.ir.interpreter import interpret
from graphc.ir.registry import NOT_DIFFERENTIABLE, all_ops, get_op
from graphc.ir.verifier import verify


def _sibling(name: str):
    """Import tests/ir/<name>.py whether pytest put tests/ir or the repo root on sys.path."""
    try:
        return importlib.import_module(f"tests.ir.{name}")
    except ModuleNotFoundError as e:
        if e.name not in (f"tests.ir.{name}", "tests.ir", "tests"):
            raise
    return importlib.import_module(name)


ORACLES = dict(_sibling("oracles_basic").ORACLES)
# Every tests/ir/oracles_*.py exports ORACLES (one module per op family); merge them all.
for _path in sorted(Path(__file__).parent.glob("oracles_*.py")):
    if _path.stem != "oracles_basic":
        ORACLES.update(_sibling(_path.stem).ORACLES)

OPS = sorted(all_ops())
DIFFERENTIABLE = [n for n in OPS if get_op(n).vjp not in (None, NOT_DIFFERENTIABLE)]
COMPOSITE = [n for n in OPS if not get_op(n).primitive]

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)
FLOATS = st.sampled_from([np.float32, np.float64])

# float32 results vs a float64 oracle rounded to float32: a few ulps per op, plus
# accumulated rounding in sums of up to ~125 terms of O(1) values.
F32_TOL = dict(rtol=1e-5, atol=1e-5)
F64_TOL = dict(rtol=1e-11, atol=1e-12)
# VJP vs central differences (float64, step 1e-6 * max(1, |x|)): truncation error is
# O(h^2 f''') ~ 1e-12 and rounding O(eps / h) ~ 1e-10 per entry, so 1e-6 relative error
# — L2 norm of the difference over the L2 norm of the sum — leaves a wide margin while
# still catching any wrong factor, sign, transpose or unbroadcast.
FD_STEP = 1e-6
FD_RTOL = 1e-6


def _sample(name, seed, dtype):
    opdef = get_op(name)
    if opdef.sample is None:
        pytest.skip(f"{name} has no sampler (reported by test_op_is_complete)")
    arrays, attrs = opdef.sample(np.random.default_rng(seed), dtype)
    return opdef, [np.asarray(a) for a in arrays], opdef.normalize_attrs(attrs)


def _one_node_graph(name, arrays, attrs):
    g = Graph(f"one_{name}")
    xs = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    with building(g) as b:
        b.emit(name, xs, attrs)
    node = g.nodes[-1]
    g.set_outputs(node.outputs)
    return g, node


def _is_float(a) -> bool:
    return np.asarray(a).dtype.kind == "f"


def _assert_close(actual, expected, dtype, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} vs {expected.dtype}"
    if _is_float(expected):
        tol = F32_TOL if np.dtype(dtype) == np.float32 else F64_TOL
        np.testing.assert_allclose(actual, expected, err_msg=what, **tol)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


# ----------------------------------------------------------------------------- declaration

@pytest.mark.parametrize("name", OPS)
def test_op_is_complete(name):
    opdef = get_op(name)
    missing = []
    if opdef.sample is None:
        missing.append("a `sample` function")
    if name not in ORACLES:
        missing.append("an oracle in one of tests/ir/oracles_*.py")
    if opdef.vjp is None:
        missing.append("a `vjp` (or vjp=NOT_DIFFERENTIABLE on purpose)")
    if not opdef.primitive and opdef.decompose is None:
        missing.append("a `decompose` (it is not a primitive)")
    assert not missing, f"op {name!r} lacks " + "; ".join(missing)


# ----------------------------------------------------------------------------- shape rule

@pytest.mark.parametrize("name", OPS)
@SETTINGS
@given(seed=SEEDS, dtype=FLOATS)
def test_shape_rule_matches_ref(name, seed, dtype):
    opdef, arrays, attrs = _sample(name, seed, dtype)
    inferred = opdef.infer_types([TensorType.of(a) for a in arrays], attrs)
    outs = [np.asarray(o) for o in opdef.run_ref(arrays, attrs)]
    assert [TensorType.of(o) for o in outs] == inferred, (
        f"{name}: shape rule says {[str(t) for t in inferred]}, ref gives "
        f"{[str(TensorType.of(o)) for o in outs]} for inputs "
        f"{[str(TensorType.of(a)) for a in arrays]}, attrs {attrs}")


# ----------------------------------------------------------------------------- interpreter

@pytest.mark.parametrize("name", OPS)
@SETTINGS
@given(seed=SEEDS)
def test_interpreter_matches_oracle(name, seed):
    if name not in ORACLES:
        pytest.skip(f"no oracle for {name} (reported by test_op_is_complete)")
    opdef, arrays, attrs = _sample(name, seed, np.float32)
    g, _ = _one_node_graph(name, arrays, attrs)
    verify(g)
    got = interpret(g, arrays)
    want = ORACLES[name](*[a.copy() for a in arrays], **attrs)
    want = list(want) if isinstance(want, tuple) else [want]
    assert len(got) == len(want), f"{name}: {len(got)} outputs, oracle gives {len(want)}"
    for k, (a, e) in enumerate(zip(got, want)):
        _assert_close(a, np.asarray(e), np.float32, f"{name} output {k}, attrs {attrs}")


# ----------------------------------------------------------------------------- gradient

def _central_differences(opdef, arrays, attrs, cts):
    """d/dx_i of sum_j <ref(x)_j, ct_j> by central differences, for each float input.

    The difference of outputs is taken before contracting with the cotangent, so terms that
    a probe does not touch cancel exactly instead of drowning the signal in rounding."""
    grads = []
    for i, x in enumerate(arrays):
        if not _is_float(x):
            grads.append(None)
            continue
        g = np.zeros(x.shape, dtype=np.float64)
        for k in np.ndindex(x.shape):
            h = FD_STEP * max(1.0, abs(float(x[k])))
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[i][k] = x[k] + h
            minus[i][k] = x[k] - h
            step = float(plus[i][k]) - float(minus[i][k])   # the step actually taken
            op_p = opdef.run_ref(plus, attrs)
            op_m = opdef.run_ref(minus, attrs)
            g[k] = sum(np.sum((np.asarray(p, np.float64) - np.asarray(m, np.float64)) * c)
                       for p, m, c in zip(op_p, op_m, cts) if c is not None) / step
        grads.append(g)
    return grads


@pytest.mark.parametrize("name", DIFFERENTIABLE)
@SETTINGS
@given(seed=SEEDS)
def test_vjp_matches_finite_differences(name, seed):
    opdef, arrays, attrs = _sample(name, seed, np.float64)
    rng = np.random.default_rng(seed ^ 0x5EED)
    g, node = _one_node_graph(name, arrays, attrs)
    # One cotangent input per float output; None for the others (they carry no gradient).
    ct_vals, ct_arrays = [], []
    for j, out in enumerate(node.outputs):
        if out.dtype.is_float:
            ct_vals.append(g.add_input(f"ct{j}", out.type))
            ct_arrays.append(rng.standard_normal(out.shape).astype(out.dtype.np))
        else:
            ct_vals.append(None)
    with building(g) as b:
        grads = opdef.vjp(b, node, ct_vals)
    grads = list(grads)
    assert len(grads) == len(node.inputs), (
        f"{name}: vjp returned {len(grads)} gradients for {len(node.inputs)} inputs")
    checked = [i for i, x in enumerate(node.inputs) if x.dtype.is_float and grads[i] is not None]
    for i in checked:
        assert grads[i].type == node.inputs[i].type, (
            f"{name}: gradient of input {i} has type {grads[i].type}, "
            f"input is {node.inputs[i].type}")
    g.set_outputs([grads[i] for i in checked])
    verify(g)
    got = dict(zip(checked, interpret(g, arrays + ct_arrays)))

    cts_by_output = []
    it = iter(ct_arrays)
    for c in ct_vals:
        cts_by_output.append(None if c is None else next(it))
    want = _central_differences(opdef, arrays, attrs, cts_by_output)
    for i, x in enumerate(arrays):
        if want[i] is None:
            continue
        a = got.get(i, np.zeros(x.shape))   # a None gradient means zero
        e = want[i]
        denom = max(float(np.linalg.norm(a + e)), 1e-12)
        rel = float(np.linalg.norm(a - e)) / denom
        assert rel < FD_RTOL, (
            f"{name}: gradient of input {i} {TensorType.of(x)} differs from central "
            f"differences: relative L2 error {rel:.3g} (attrs {attrs})\n"
            f"vjp:\n{a}\nfinite differences:\n{e}")


# ----------------------------------------------------------------------------- decomposition

@pytest.mark.parametrize("name", COMPOSITE)
@SETTINGS
@given(seed=SEEDS, dtype=FLOATS)
def test_decomposition_matches_ref(name, seed, dtype):
    opdef, arrays, attrs = _sample(name, seed, dtype)
    if opdef.decompose is None:
        pytest.skip(f"{name} has no decompose (reported by test_op_is_complete)")
    g = Graph(f"decomposed_{name}")
    xs = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    with building(g) as b:
        res = opdef.decompose(b, xs, attrs)
    outs = list(res) if isinstance(res, (tuple, list)) else [res]
    g.set_outputs(outs)
    verify(g)
    assert name not in g.op_counts(), f"{name}: decomposition uses {name} itself"
    expected_types = opdef.infer_types([x.type for x in xs], attrs)
    assert [v.type for v in outs] == expected_types, (
        f"{name}: decomposition gives {[str(v.type) for v in outs]}, "
        f"op gives {[str(t) for t in expected_types]}")
    for k, (a, e) in enumerate(zip(interpret(g, arrays), opdef.run_ref(arrays, attrs))):
        _assert_close(a, np.asarray(e), dtype, f"{name} decomposition output {k}")
