"""Activations vs float64 numpy formulas, eagerly and through a traced graph run by the
reference interpreter; extreme inputs stay finite; get/serialize/deserialize by name."""
import math

import numpy as np
import pytest

import graphc.activations as A
from graphc.errors import UnknownNameError
from graphc.frontend.tracing import TraceContext
from graphc.ir.dtypes import TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret


def run_graph(fn, *arrays):
    g = Graph("t")
    ins = [g.add_input(f"x{i}", TensorType.of(a)) for i, a in enumerate(arrays)]
    with TraceContext(g):
        out = fn(*ins)
    g.set_outputs([out])
    return interpret(g, list(arrays))[0]


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_erf = np.vectorize(math.erf)
ALPHA, SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

REF = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": _softmax,
    "log_softmax": lambda x: np.log(_softmax(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "selu": lambda x: SCALE * np.where(x > 0, x, ALPHA * (np.exp(x) - 1)),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "exponential": np.exp,
    "swish": lambda x: x / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
}

X64 = np.random.default_rng(0).uniform(-5, 5, size=(4, 6))
X32 = X64.astype(np.float32)


@pytest.mark.parametrize("name", sorted(REF))
def test_activation_matches_numpy_eager_and_graph(name):
    fn = A.get(name)
    want = REF[name](X32.astype(np.float64))
    eager = fn(X32)
    assert eager.dtype == np.float32 and eager.shape == X32.shape
    np.testing.assert_allclose(eager, want, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(run_graph(fn, X32), want, rtol=2e-5, atol=2e-6)


def test_float64_is_kept():
    np.testing.assert_allclose(A.gelu(X64), REF["gelu"](X64), rtol=1e-12)
    assert A.softplus(X64).dtype == np.float64


def test_gelu_tanh_approximation():
    x = X64
    want = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(A.gelu(X32, approximate=True), want, rtol=2e-5, atol=2e-6)
    assert not np.allclose(A.gelu(X64, approximate=True), A.gelu(X64), rtol=1e-9, atol=0)


def test_keras3_defaults():
    x = np.array([-3.0, -1.0, 0.0, 3.0], np.float32)
    np.testing.assert_allclose(A.hard_sigmoid(x), [0, 1 / 3, 0.5, 1], rtol=1e-6)
    np.testing.assert_allclose(A.leaky_relu(x), [-0.6, -0.2, 0, 3], rtol=1e-6)
    np.testing.assert_allclose(A.elu(x, alpha=2.0), 2 * (np.exp([-3.0, -1.0, 0, 0]) - 1)
                               + [0, 0, 0, 3], rtol=1e-6)
    s = A.softmax(np.arange(6, dtype=np.float32).reshape(2, 3), axis=0)
    np.testing.assert_allclose(s.sum(axis=0), 1, rtol=1e-6)


def test_relu_options_follow_keras():
    x = np.linspace(-4, 9, 27)
    np.testing.assert_allclose(A.relu(x, max_value=6.0), np.clip(x, 0, 6))
    np.testing.assert_allclose(A.relu(x, threshold=1.5), np.where(x > 1.5, x, 0))
    np.testing.assert_allclose(A.relu(x, negative_slope=0.1),
                               np.where(x >= 0, x, 0.1 * x))
    np.testing.assert_allclose(A.relu(x, negative_slope=0.1, threshold=1.0, max_value=5.0),
                               np.where(x < 1.0, 0.1 * (x - 1.0),
                                        np.where(x > 1.0, np.minimum(x, 5), 0)))


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "softsign", "tanh", "elu", "selu",
                                  "gelu", "swish", "softmax", "log_softmax", "hard_sigmoid",
                                  "leaky_relu", "relu", "mish"])
def test_extreme_inputs_stay_finite(name):
    x = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], np.float32)
    fn = A.get(name)
    for out in (fn(x), run_graph(fn, x)):
        assert np.all(np.isfinite(out)), (name, out)
    if name == "softplus":
        np.testing.assert_allclose(fn(x)[0], [0, 0, np.log(2), 100, 1e4], rtol=1e-6, atol=1e-30)
    if name == "sigmoid":
        np.testing.assert_allclose(fn(x)[0], [0, 0, 0.5, 1, 1], atol=1e-30)


def test_get_forms():
    assert A.get(None) is A.linear
    assert A.get("relu") is A.relu
    assert A.get("swish") is A.silu
    f = lambda x: x  # noqa: E731
    assert A.get(f) is f
    assert A.get({"module": "keras.activations", "class_name": "function", "config": "tanh",
                  "registered_name": "tanh"}) is A.tanh


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        A.get("rleu")
    assert isinstance(e.value, ValueError)
    for n in ("relu", "softmax", "hard_sigmoid", "selu"):
        assert n in str(e.value)


@pytest.mark.parametrize("name", sorted(REF))
def test_serialize_roundtrip(name):
    fn = A.get(name)
    s = A.serialize(fn)
    assert isinstance(s, str)
    assert A.deserialize(s) is fn
