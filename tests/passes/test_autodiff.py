"""Reverse-mode autodiff on whole graphs: composed gradients against central finite
differences (float64), fan-out accumulation, and where gradients must not flow."""
import numpy as np
import pytest

from graphc.errors import GraphcError
from graphc.ir.dtypes import TensorType, f64
from graphc.ir.graph import Graph, building
from graphc.ir.interpreter import interpret
from graphc.passes.autodiff import gradients


def _fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def test_mlp_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    W1, b1, W2 = rng.standard_normal((4, 6)), rng.standard_normal(6), rng.standard_normal((6, 3))
    g = Graph("mlp")
    x = g.add_input("x", TensorType(X.shape, f64))
    y = g.add_input("y", TensorType(Y.shape, f64))
    w1 = g.add_param("w1", TensorType(W1.shape, f64))
    bb = g.add_param("b1", TensorType(b1.shape, f64))
    w2 = g.add_param("w2", TensorType(W2.shape, f64))
    with building(g) as b:
        h = b.tanh(x @ w1 + bb)
        p = b.log_softmax(h @ w2, axis=1)
        loss = b.reduce_mean(b.neg(b.reduce_sum(p * b.softmax(y, axis=1), axes=(1,))), axes=(0,))
        grads = gradients(g, loss, [w1, bb, w2])
    g.set_outputs([loss, *grads])
    out = interpret(g, [X, Y], [W1, b1, W2])

    def loss_np(w1_, b1_, w2_):
        hh = np.tanh(X @ w1_ + b1_)
        z = hh @ w2_
        logp = z - z.max(1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
        t = np.exp(Y - Y.max(1, keepdims=True))
        t /= t.sum(1, keepdims=True)
        return -(logp * t).sum(1).mean()

    assert np.isclose(out[0], loss_np(W1, b1, W2))
    np.testing.assert_allclose(out[1], _fd(lambda w: loss_np(w, b1, W2), W1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out[2], _fd(lambda v: loss_np(W1, v, W2), b1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(out[3], _fd(lambda w: loss_np(W1, b1, w), W2), rtol=1e-6, atol=1e-9)


def test_fan_out_accumulates_and_unrelated_inputs_get_none():
    g = Graph("f")
    x = g.add_input("x", TensorType((3,), f64))
    z = g.add_input("z", TensorType((3,), f64))
    with building(g) as b:
        s = b.reduce_sum(x * x + b.exp(x), axes=(0,))   # x used three times
        gx, gz = gradients(g, s, [x, z])
    assert gz is None
    g.set_outputs([gx])
    X = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(interpret(g, [X, X])[0], 2 * X + np.exp(X), rtol=1e-12)


def test_non_differentiable_ops_stop_the_gradient():
    g = Graph("f")
    x = g.add_input("x", TensorType((4,), f64))
    with building(g) as b:
        mask = b.cast(b.greater(x, 0.0), dtype=f64)        # depends on x, no gradient
        s = b.reduce_sum(mask * x, axes=(0,))
        gx, = gradients(g, s, [x])
    g.set_outputs([gx])
    X = np.array([1.0, -2.0, 3.0, -0.5])
    np.testing.assert_array_equal(interpret(g, [X])[0], (X > 0).astype(float))


def test_gradient_needs_a_scalar():
    g = Graph("f")
    x = g.add_input("x", TensorType((2,), f64))
    with building(g) as b:
        y = b.exp(x)
        with pytest.raises(GraphcError, match="scalar"):
            gradients(g, y, [x])
