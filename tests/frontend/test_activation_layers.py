"""Activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax) against numpy formulas written
here from Keras' documented definitions, plus weights, argument checks and configs."""
from __future__ import annotations

import json

import numpy as np
import pytest

import graphc
from graphc.layers import ELU, Input, LeakyReLU, PReLU, ReLU, Softmax
from graphc.models import Sequential
from graphc.optimizers import SGD

RNG = np.random.default_rng(7)


def rand(*shape, scale=2.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def relu_oracle(x, max_value=None, negative_slope=0.0, threshold=0.0):
    """Keras' ReLU formula: max_value if x >= max_value; x if threshold < x < max_value;
    negative_slope * (x - threshold) if x <= threshold (0 at x == threshold)."""
    x = x.astype(np.float64)
    y = np.where(x > threshold, x, negative_slope * (x - threshold))
    if max_value is not None:
        y = np.where(x >= max_value, max_value, y)
    return y


@pytest.mark.parametrize("kw", [{}, {"max_value": 6.0}, {"max_value": 1.0},
                                {"negative_slope": 0.1}, {"threshold": 0.5},
                                {"negative_slope": 0.2, "threshold": 0.5},
                                {"max_value": 2.0, "negative_slope": 0.3, "threshold": 1.0},
                                {"max_value": 0.0}])
def test_relu_variants(kw):
    x = rand(5, 7)
    x[0, :3] = [kw.get("threshold", 0.0), kw.get("max_value") or 3.0, 0.0]   # edges
    layer = ReLU(**kw)
    np.testing.assert_allclose(layer(x), relu_oracle(x, **kw), rtol=1e-6, atol=1e-6)
    assert layer(x).dtype == np.float32


def test_relu_rejects_negative_arguments():
    for kw in ({"max_value": -1.0}, {"negative_slope": -0.1}, {"threshold": -1.0},
               {"negative_slope": None}):
        with pytest.raises(ValueError):
            ReLU(**kw)


def test_leaky_relu_default_slope_and_keras2_alpha():
    x = rand(4, 6)
    layer = LeakyReLU()
    assert layer.negative_slope == 0.3
    np.testing.assert_allclose(layer(x), np.where(x >= 0, x, 0.3 * x), rtol=1e-6)
    old = LeakyReLU(alpha=0.1)          # Keras 2 keyword (old configs)
    np.testing.assert_allclose(old(x), np.where(x >= 0, x, 0.1 * x), rtol=1e-6)
    assert old.get_config()["negative_slope"] == 0.1
    with pytest.raises(ValueError):
        LeakyReLU(negative_slope=-0.5)


def test_prelu_alpha_shape_like_keras_and_forward():
    layer = PReLU()
    layer.build((None, 4, 5, 3))
    assert [w.name for w in layer.weights] == ["alpha"] and layer.alpha.shape == (4, 5, 3)
    np.testing.assert_array_equal(layer.alpha.value, 0)      # 'Zeros' initializer
    shared = PReLU(shared_axes=[1, 2], alpha_initializer="ones")
    shared.build((None, 4, 5, 3))
    assert shared.alpha.shape == (1, 1, 3)
    a = rand(1, 1, 3)
    shared.set_weights([a])
    x = rand(2, 4, 5, 3)
    np.testing.assert_allclose(shared(x), np.where(x > 0, x, a * x), rtol=1e-6, atol=1e-7)
    one = PReLU(shared_axes=2)
    one.build((None, 6, 4))
    assert one.alpha.shape == (6, 1)


def test_prelu_alpha_trains():
    model = Sequential([Input((4,)), PReLU(alpha_initializer="zeros")])
    model.compile(optimizer=SGD(learning_rate=0.5), loss="mse")
    x = -np.abs(rand(8, 4)) - 0.1       # all negative: d out / d alpha = x
    y = 0.5 * x                          # the ideal alpha is 0.5
    exe = graphc.compile(model, target="reference")
    exe.train_on_batch(x, y)
    alpha = model.layers[-1].alpha.value
    # d mse / d alpha_j = mean over batch of 2 * (alpha x - y) * x / 4 with alpha = 0.
    want = -0.5 * (2 * (0 - y) * x / 4).mean(0)
    np.testing.assert_allclose(alpha, want, rtol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_elu(alpha):
    x = rand(6, 5)
    x[0, 0] = 0.0
    layer = ELU(alpha=alpha) if alpha != 1.0 else ELU()
    want = np.where(x >= 0, x, alpha * np.expm1(x.astype(np.float64)))
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-6)


def softmax_oracle(x, axes):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


@pytest.mark.parametrize("axis", [-1, 1, 2, [1, 2], [2]])
def test_softmax_axes(axis):
    x = rand(3, 4, 5, scale=5.0)
    axes = tuple(axis) if isinstance(axis, list) else axis
    np.testing.assert_allclose(Softmax(axis=axis)(x), softmax_oracle(x, axes), rtol=1e-5,
                               atol=1e-7)


def test_softmax_large_logits_and_mask():
    x = np.array([[1000.0, 1001.0, -1000.0], [3.0, 1.0, 2.0]], np.float32)
    np.testing.assert_allclose(Softmax()(x), softmax_oracle(x, -1), rtol=1e-6, atol=1e-7)
    mask = np.array([[1, 0, 1], [1, 1, 0]], bool)
    got = Softmax()(x, mask=mask)
    want = softmax_oracle(np.where(mask, x, x - 1e9), -1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert got[0, 1] == 0 and got[1, 2] == 0


def test_symbolic_shapes_and_in_model():
    inp = Input((4, 3))
    for layer in (ReLU(6.0), LeakyReLU(), PReLU(), ELU(), Softmax(axis=1)):
        assert layer(inp).shape == (None, 4, 3)
    model = Sequential([Input((5,)), ReLU(max_value=1.0), Softmax()])
    x = rand(4, 5)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               softmax_oracle(np.clip(x, 0, 1), -1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layer,keys", [
    (ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5),
     {"max_value", "negative_slope", "threshold"}),
    (LeakyReLU(negative_slope=0.2), {"negative_slope"}),
    (PReLU(alpha_initializer="ones", alpha_regularizer="l2", alpha_constraint="non_neg",
           shared_axes=[1]), {"alpha_initializer", "alpha_regularizer", "alpha_constraint",
                              "shared_axes"}),
    (ELU(alpha=0.7), {"alpha"}),
    (Softmax(axis=[1, 2]), {"axis"}),
])
def test_config_round_trip(layer, keys):
    cfg = layer.get_config()
    assert keys <= set(cfg) and {"name", "trainable", "dtype"} <= set(cfg)
    clone = layer.__class__.from_config(json.loads(json.dumps(cfg)))
    assert clone.get_config() == cfg
