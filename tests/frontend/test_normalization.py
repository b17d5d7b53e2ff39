"""BatchNormalization and LayerNormalization against numpy computations written here:
Keras weight layouts, training vs inference vs frozen behaviour, moving-statistic updates
through a real train step, the gamma/beta/input gradients of BN (closed-form backprop), any
axis, and config round trips."""
from __future__ import annotations

import json

import numpy as np
import pytest

import graphc
from graphc.errors import ShapeError
from graphc.frontend.seeding import set_random_seed
from graphc.layers import BatchNormalization, Dense, Input, LayerNormalization
from graphc.models import Model, Sequential
from graphc.optimizers import SGD

RNG = np.random.default_rng(42)


def rand(*shape, scale=1.0, shift=0.0):
    return (RNG.standard_normal(shape) * scale + shift).astype(np.float32)


def bn_oracle(x, axes, gamma, beta, mean, var, eps):
    """(x - mean) / sqrt(var + eps) * gamma + beta, with the per-channel vectors placed on
    ``axes`` (float64)."""
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    r = lambda v: np.asarray(v, np.float64).reshape(shape)  # noqa: E731
    return (x - r(mean)) / np.sqrt(r(var) + eps) * r(gamma) + r(beta)


def batch_moments(x, axes):
    red = tuple(i for i in range(x.ndim) if i not in axes)
    xd = x.astype(np.float64)
    return xd.mean(axis=red), xd.var(axis=red)   # biased variance, as Keras


def set_random_bn_weights(bn):
    c = bn.moving_mean.shape
    vals = []
    for v in bn.weights:
        if v.name == "moving_variance":
            vals.append(RNG.uniform(0.5, 2.0, c).astype(np.float32))
        else:
            vals.append(rand(*c))
    bn.set_weights(vals)
    return {v.name: v.numpy() for v in bn.weights}


# ----------------------------------------------------------------------------- layout


def test_batchnorm_weights_in_keras_order_and_shapes():
    bn = BatchNormalization(name="bn")
    bn.build((None, 6, 6, 5))
    assert [w.path for w in bn.weights] == ["bn.gamma", "bn.beta", "bn.moving_mean",
                                            "bn.moving_variance"]
    assert all(w.shape == (5,) for w in bn.weights)
    assert [w.name for w in bn.trainable_weights] == ["gamma", "beta"]
    assert [w.name for w in bn.non_trainable_weights] == ["moving_mean", "moving_variance"]
    g, b, m, v = bn.get_weights()
    np.testing.assert_array_equal(g, 1)
    np.testing.assert_array_equal(b, 0)
    np.testing.assert_array_equal(m, 0)
    np.testing.assert_array_equal(v, 1)


@pytest.mark.parametrize("center,scale,names", [
    (False, True, ["gamma", "moving_mean", "moving_variance"]),
    (True, False, ["beta", "moving_mean", "moving_variance"]),
    (False, False, ["moving_mean", "moving_variance"])])
def test_batchnorm_center_scale_flags_drop_weights(center, scale, names):
    bn = BatchNormalization(center=center, scale=scale)
    x = rand(8, 3)
    bn.build((None, 3))
    w = set_random_bn_weights(bn)
    assert [v.name for v in bn.weights] == names
    y = bn(x)
    want = bn_oracle(x, [1], w.get("gamma", np.ones(3)), w.get("beta", np.zeros(3)),
                     w["moving_mean"], w["moving_variance"], 1e-3)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_batchnorm_axis_list_uses_keras2_weight_layout():
    bn = BatchNormalization(axis=[1, 3])
    bn.build((None, 4, 5, 3))
    assert all(w.shape == (1, 4, 1, 3) for w in bn.weights)
    one = BatchNormalization(axis=[1])
    one.build((None, 4, 5))
    assert all(w.shape == (4,) for w in one.weights) and one.axis == 1


def test_batchnorm_shape_errors_name_the_layer():
    bn = BatchNormalization(axis=3, name="bn_bad")
    with pytest.raises(ShapeError, match="bn_bad"):
        bn.build((None, 4, 5))
    bn = BatchNormalization(name="bn_ch")
    bn.build((None, 4))
    with pytest.raises(ShapeError, match="bn_ch"):
        bn(rand(2, 5))
    with pytest.raises(ValueError, match="batch axis"):
        BatchNormalization(axis=0).build((None, 4))


# ----------------------------------------------------------------------------- forward

@pytest.mark.parametrize("shape,axis", [((6, 4), -1), ((5, 3, 4), 2), ((5, 3, 4), 1),
                                        ((4, 3, 5, 5), 1), ((4, 5, 5, 3), -1),
                                        ((4, 3, 5, 2), [1, 3])])
def test_batchnorm_inference_uses_moving_statistics(shape, axis):
    bn = BatchNormalization(axis=axis, epsilon=1e-2)
    x = rand(*shape, scale=2.0, shift=0.5)
    bn.build((None,) + shape[1:])
    w = set_random_bn_weights(bn)
    axes = [a % len(shape) for a in (axis if isinstance(axis, list) else [axis])]
    want = bn_oracle(x, axes, w["gamma"], w["beta"], w["moving_mean"], w["moving_variance"],
                     1e-2)
    np.testing.assert_allclose(bn(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn(x, training=False), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,axis", [((16, 4), -1), ((6, 3, 4), 1), ((4, 3, 5, 5), 1),
                                        ((4, 5, 5, 3), 3), ((4, 3, 5, 2), [1, 3])])
def test_batchnorm_training_uses_batch_statistics_and_updates_moving_stats(shape, axis):
    bn = BatchNormalization(axis=axis, momentum=0.8)
    x = rand(*shape, scale=3.0, shift=2.0)
    bn.build((None,) + shape[1:])
    w = set_random_bn_weights(bn)
    axes = [a % len(shape) for a in (axis if isinstance(axis, list) else [axis])]
    mean, var = batch_moments(x, axes)
    y = bn(x, training=True)
    want = bn_oracle(x, axes, w["gamma"].ravel(), w["beta"].ravel(), mean.ravel(),
                     var.ravel(), 1e-3)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    pshape = w["moving_mean"].shape
    np.testing.assert_allclose(bn.moving_mean.value,
                               w["moving_mean"] * 0.8 + mean.reshape(pshape) * 0.2,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.value,
                               w["moving_variance"] * 0.8 + var.reshape(pshape) * 0.2,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.gamma.value, w["gamma"])


def test_batchnorm_masked_statistics_follow_keras():
    bn = BatchNormalization(momentum=0.5)
    x = rand(3, 4, 2, shift=1.0)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], bool)
    y = bn(x, training=True, mask=mask)
    wts = mask[..., None].astype(np.float64)
    n = wts.sum() + 1e-7
    mean = (wts * x).sum((0, 1)) / n
    var = (wts * (wts * x - mean) ** 2).sum((0, 1)) / n
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.value, 0.5 * mean, rtol=1e-5, atol=1e-6)


def test_batchnorm_symbolic_shapes_and_frozen_eager_call():
    inp = Input((5, 5, 3))
    bn = BatchNormalization()
    assert bn(inp).shape == (None, 5, 5, 3)
    x = rand(4, 5, 5, 3)
    w = set_random_bn_weights(bn)
    bn.trainable = False           # Keras 3: a frozen BN runs in inference mode
    want = bn_oracle(x, [3], w["gamma"], w["beta"], w["moving_mean"],
                     w["moving_variance"], 1e-3)
    np.testing.assert_allclose(bn(x, training=True), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(bn.moving_mean.value, w["moving_mean"])


# ----------------------------------------------------------------------------- train step

def _dense_bn_model(momentum=0.9, bn_trainable=True):
    set_random_seed(3)
    inp = Input((3,))
    h = Dense(4, use_bias=False, name="d")(inp)
    bn = BatchNormalization(momentum=momentum, name="bn")
    bn.trainable = bn_trainable
    out = bn(h)
    model = Model(inp, out)
    model.compile(optimizer=SGD(learning_rate=0.1), loss="mse")
    return model, model.get_layer("d"), bn


def test_one_fit_step_updates_moving_stats_and_weights_like_numpy_backprop():
    model, dense, bn = _dense_bn_model(momentum=0.9)
    w = set_random_bn_weights(bn)
    k = dense.get_weights()[0]
    x, y = rand(8, 3), rand(8, 4)
    exe = graphc.compile(model, target="reference")
    loss = exe.train_on_batch(x, y)

    # Forward in float64: batch statistics of h = x @ k.
    h = x.astype(np.float64) @ k
    mu, var = h.mean(0), h.var(0)
    inv = 1.0 / np.sqrt(var + 1e-3)
    xhat = (h - mu) * inv
    out = xhat * w["gamma"] + w["beta"]
    np.testing.assert_allclose(loss, np.mean((out - y) ** 2), rtol=1e-5)

    # Backward: mse over all N*C elements, then BN's closed-form input gradient (the terms
    # through the batch mean and variance included).
    n = x.shape[0]
    dout = 2.0 * (out - y) / out.size
    dgamma, dbeta = (dout * xhat).sum(0), dout.sum(0)
    dxhat = dout * w["gamma"]
    dh = inv / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    dk = x.T.astype(np.float64) @ dh
    np.testing.assert_allclose(bn.gamma.value, w["gamma"] - 0.1 * dgamma, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.beta.value, w["beta"] - 0.1 * dbeta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense.get_weights()[0], k - 0.1 * dk, rtol=1e-4, atol=1e-6)

    # Moving statistics: Keras' update with the biased batch variance.
    np.testing.assert_allclose(bn.moving_mean.value, 0.9 * w["moving_mean"] + 0.1 * mu,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.value,
                               0.9 * w["moving_variance"] + 0.1 * var, rtol=1e-5, atol=1e-6)

    # Inference (predict) now normalizes with the updated moving statistics.
    k2 = dense.get_weights()[0]
    g2, b2, m2, v2 = bn.get_weights()
    want = bn_oracle(x.astype(np.float64) @ k2, [1], g2, b2, m2, v2, 1e-3)
    np.testing.assert_allclose(exe.predict(x, verbose=0), want, rtol=1e-4, atol=1e-5)


def test_frozen_batchnorm_stays_bit_identical_and_runs_in_inference_mode():
    model, dense, bn = _dense_bn_model(bn_trainable=False)
    before = [v.copy() for v in set_random_bn_weights(bn).values()]
    assert [v.name for v in model.trainable_weights] == ["kernel"]
    x, y = rand(16, 3), rand(16, 4)
    k = dense.get_weights()[0]
    g, b, m, v = before
    # The loss of a training step is computed with the moving statistics (inference mode).
    want_out = bn_oracle(x.astype(np.float64) @ k, [1], g, b, m, v, 1e-3)
    loss = model.train_on_batch(x, y)
    np.testing.assert_allclose(loss, np.mean((want_out - y) ** 2), rtol=1e-5)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for a, w in zip(bn.get_weights(), before):
        np.testing.assert_array_equal(a, w)
    assert not np.array_equal(dense.get_weights()[0], k)   # the rest still trains


def test_fit_converges_moving_stats_to_data_statistics():
    model = Sequential([Input((2,)), BatchNormalization(momentum=0.5)])
    model.compile(optimizer=SGD(learning_rate=0.0), loss="mse")
    x = rand(64, 2, scale=3.0, shift=5.0)
    model.fit(x, np.zeros_like(x), batch_size=64, epochs=20, verbose=0)
    bn = model.layers[-1]
    np.testing.assert_allclose(bn.moving_mean.value, x.mean(0), rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.value, x.var(0), rtol=1e-3)


# ----------------------------------------------------------------------------- LayerNorm

def ln_oracle(x, axes, gamma, beta, eps, rms=False):
    red = tuple(sorted(a % x.ndim for a in axes))
    xd = x.astype(np.float64)
    mean = xd.mean(red, keepdims=True)
    var = xd.var(red, keepdims=True)
    bshape = [x.shape[i] if i in red else 1 for i in range(x.ndim)]
    if rms:
        out = xd / np.sqrt(var + eps)
        return out * gamma.reshape(bshape) if gamma is not None else out
    out = (xd - mean) / np.sqrt(var + eps)
    if gamma is not None:
        out = out * gamma.reshape(bshape)
    if beta is not None:
        out = out + beta.reshape(bshape)
    return out


@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((3, 4, 5), -1), ((3, 4, 5), [1, 2]),
                                        ((2, 3, 4, 5), [1, 2, 3]), ((3, 4, 5), 1),
                                        ((2, 3, 4, 5), [3, 1])])
def test_layernorm_matches_numpy(shape, axis):
    ln = LayerNormalization(axis=axis)
    x = rand(*shape, scale=2.0, shift=1.0)
    ln.build((None,) + shape[1:])
    axes = axis if isinstance(axis, list) else [axis]
    wshape = tuple(shape[a] for a in axes)            # the order given, as Keras
    assert ln.gamma.shape == wshape and ln.beta.shape == wshape
    assert [w.name for w in ln.weights] == ["gamma", "beta"]
    g, b = rand(*wshape), rand(*wshape)
    ln.set_weights([g, b])
    np.testing.assert_allclose(ln(x), ln_oracle(x, axes, g, b, 1e-3), rtol=1e-4, atol=1e-5)
    assert ln.get_config()["axis"] == axes            # a list once built (Keras)


def test_layernorm_flags_and_rms_scaling():
    x = rand(4, 7, shift=2.0)
    ln = LayerNormalization(center=False, scale=False, epsilon=1e-5)
    assert ln(x).shape == x.shape and ln.weights == []
    np.testing.assert_allclose(ln(x), ln_oracle(x, [-1], None, None, 1e-5), rtol=1e-4,
                               atol=1e-5)
    rms = LayerNormalization(rms_scaling=True)
    rms.build((None, 7))
    assert [w.name for w in rms.weights] == ["gamma"]
    g = rand(7)
    rms.set_weights([g])
    np.testing.assert_allclose(rms(x), ln_oracle(x, [-1], g, None, 1e-3, rms=True),
                               rtol=1e-4, atol=1e-5)


def test_layernorm_default_epsilon_and_training_independence():
    ln = LayerNormalization()
    assert ln.epsilon == 1e-3 and ln.axis == -1
    x = rand(3, 5)
    np.testing.assert_array_equal(ln(x), ln(x, training=True))


# ----------------------------------------------------------------------------- configs

@pytest.mark.parametrize("layer", [
    BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False,
                       gamma_regularizer="l2", beta_constraint="non_neg",
                       moving_variance_initializer="zeros"),
    BatchNormalization(axis=[1, 2]),
    LayerNormalization(axis=[1, 2], epsilon=1e-6, rms_scaling=True, gamma_initializer="zeros"),
])
def test_config_round_trip(layer):
    cfg = layer.get_config()
    clone = layer.__class__.from_config(json.loads(json.dumps(cfg)))
    assert clone.get_config() == cfg


def test_batchnorm_config_has_keras_keys():
    cfg = BatchNormalization().get_config()
    for k in ("axis", "momentum", "epsilon", "center", "scale", "beta_initializer",
              "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer",
              "beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint",
              "synchronized", "name", "trainable", "dtype"):
        assert k in cfg
    assert cfg["axis"] == -1 and cfg["momentum"] == 0.99 and cfg["epsilon"] == 1e-3
    # Keras 2 arguments in old configs are accepted.
    BatchNormalization(fused=True, renorm=False, virtual_batch_size=None)
