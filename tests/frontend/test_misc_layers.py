"""Permute, RepeatVector, the noise layers (GaussianNoise, GaussianDropout, SpatialDropout),
ActivityRegularization / activity_regularizer and Dot, against numpy computations written
here; the Gaussian sampler against an independent inverse normal CDF (Newton on math.erf)
applied to the same counter-based uniforms."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from graphc.errors import ShapeError
from graphc.frontend.tracing import TraceContext
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.ops.misc import random_bits, random_key
from graphc.layers import (ActivityRegularization, Dense, Dot, GaussianDropout, GaussianNoise,
                           Input, Permute, RepeatVector, SpatialDropout1D, SpatialDropout2D,
                           SpatialDropout3D, dot)
from graphc.models import Model, Sequential
from graphc.optimizers import SGD

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def trace_layer(layer, x, training, seed=7, step=0):
    """Run ``layer`` inside a trace with explicit seed/step (as the train step does)."""
    g = Graph("t")
    s = g.add_input("seed", TensorType((), DType.i64))
    k = g.add_input("step", TensorType((), DType.i64))
    xv = g.add_input("x", TensorType.of(x))
    with TraceContext(g, training=training, seed=s, step=k) as ctx:
        out = layer(xv)
    g.set_outputs([out])
    by_param = {val: var for var, val in ctx.var_values.items()}
    return interpret(g, [np.array(seed, np.int64), np.array(step, np.int64), x],
                     [by_param[p].value for p in g.params])[0]


# ----------------------------------------------------------------------------- Permute

@pytest.mark.parametrize("dims", [(2, 1), (1, 2), (3, 1, 2), (2, 3, 1)])
def test_permute_values_and_shapes(dims):
    x = rand(2, 3, 4) if len(dims) == 2 else rand(2, 3, 4, 5)
    layer = Permute(dims)
    np.testing.assert_array_equal(layer(x), np.transpose(x, (0,) + dims))
    sym = Permute(dims)(Input(x.shape[1:]))
    assert sym.shape == (None,) + tuple(x.shape[d] for d in dims)


def test_permute_errors_and_config():
    with pytest.raises(ValueError):
        Permute((0, 1))
    with pytest.raises(ValueError):
        Permute((1, 3))
    with pytest.raises(ShapeError, match="perm_rank"):
        Permute((2, 1), name="perm_rank")(Input((3, 4, 5)))
    layer = Permute((2, 1))
    cfg = json.loads(json.dumps(layer.get_config()))
    assert Permute.from_config(cfg).dims == (2, 1)


# ----------------------------------------------------------------------------- RepeatVector

def test_repeat_vector():
    x = rand(3, 5)
    y = RepeatVector(4)(x)
    assert y.shape == (3, 4, 5)
    np.testing.assert_array_equal(y, np.repeat(x[:, None, :], 4, axis=1))
    assert RepeatVector(2)(Input((7,))).shape == (None, 2, 7)
    with pytest.raises(TypeError):
        RepeatVector(2.5)
    with pytest.raises(ShapeError):
        RepeatVector(2)(Input((3, 4)))
    assert RepeatVector.from_config(RepeatVector(3).get_config()).n == 3


def test_repeat_vector_trains_in_a_model():
    model = Sequential([Input((3,)), RepeatVector(2), Dense(1)])
    model.compile(optimizer=SGD(0.1), loss="mse")
    x = rand(4, 3)
    before = model.evaluate(x, np.zeros((4, 2, 1)), verbose=0)
    model.fit(x, np.zeros((4, 2, 1)), epochs=5, verbose=0)
    assert model.evaluate(x, np.zeros((4, 2, 1)), verbose=0) < before


# ----------------------------------------------------------------------------- Gaussian noise

def exact_normal_icdf(u):
    """Phi^-1 of the open-interval uniform the layers use, by Newton on math.erf in f64."""
    v = (u.astype(np.float64) - 0.5) * 2.0 + 2.0 ** -24       # strictly inside (-1, 1)
    z = np.zeros_like(v)
    erf = np.vectorize(math.erf)
    for _ in range(60):
        step = (erf(z) - v) / (2 / math.sqrt(math.pi) * np.exp(-z * z))
        z = z - np.clip(step, -1, 1)
        if np.max(np.abs(step)) < 1e-14:
            break
    return z * math.sqrt(2.0)


def uniforms(seed, step, salt, n):
    return (random_bits(random_key(seed, step, salt), n) >> np.uint32(8)) * 2.0 ** -24


def test_gaussian_noise_identity_in_inference():
    x = rand(4, 6)
    layer = GaussianNoise(0.3)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(trace_layer(layer, x, training=False), x)
    model = Sequential([Input((6,)), GaussianNoise(0.5), GaussianDropout(0.4)])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def test_gaussian_noise_is_the_exact_inverse_cdf_of_the_counter_uniforms():
    x = np.zeros((64, 32), np.float32)
    layer = GaussianNoise(1.0, name="gn_exact")
    z = trace_layer(layer, x, training=True, seed=123, step=5)
    u = uniforms(123, 5, layer._salt, x.size).reshape(x.shape)
    np.testing.assert_allclose(z, exact_normal_icdf(u), rtol=0, atol=2e-6)
    # The extreme uniforms are finite and symmetric.
    ends = exact_normal_icdf(np.array([0.0, 1 - 2.0 ** -24]))
    np.testing.assert_allclose(ends, [-5.419983, 5.419983], rtol=1e-6)


def test_gaussian_noise_statistics_and_streams():
    x = np.full((200, 500), 3.0, np.float32)
    layer = GaussianNoise(0.2)
    y = trace_layer(layer, x, training=True, seed=1, step=0)
    noise = (y - 3.0) / 0.2
    n = noise.size
    assert abs(noise.mean()) < 5 / math.sqrt(n)
    assert abs(noise.std() - 1.0) < 5 * math.sqrt(0.5 / n)      # s.e. of the std
    for k, p in ((1, 0.682689), (2, 0.954500), (3, 0.997300)):
        assert abs(np.mean(np.abs(noise) < k) - p) < 5 * math.sqrt(p * (1 - p) / n)
    # Third and fourth moments: the sample-mean standard errors are sqrt(15/n), sqrt(96/n).
    assert abs(np.mean(noise ** 3)) < 5 * math.sqrt(15 / n)
    assert abs(np.mean(noise ** 4) - 3) < 5 * math.sqrt(96 / n)
    again = trace_layer(layer, x, training=True, seed=1, step=0)
    np.testing.assert_array_equal(y, again)                     # a pure function
    other = trace_layer(layer, x, training=True, seed=1, step=1)
    assert abs(np.corrcoef(y.ravel(), other.ravel())[0, 1]) < 0.01   # new step, new draw
    other_layer = trace_layer(GaussianNoise(0.2), x, training=True, seed=1, step=0)
    assert not np.array_equal(y, other_layer)                   # per-layer stream


def test_gaussian_noise_in_fit_and_argument_checks():
    with pytest.raises(ValueError):
        GaussianNoise(1.5)
    with pytest.raises(ValueError):
        GaussianDropout(-0.1)
    model = Sequential([Input((4,)), GaussianNoise(0.1), Dense(1)])
    model.compile(optimizer=SGD(0.05), loss="mse")
    x = rand(32, 4)
    y = x.sum(1, keepdims=True)
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=10, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first


def test_gaussian_dropout_statistics():
    x = np.full((300, 400), 2.0, np.float32)
    rate = 0.3
    y = trace_layer(GaussianDropout(rate), x, training=True, seed=9, step=2)
    mult = y / 2.0
    assert abs(mult.mean() - 1.0) < 5 * math.sqrt(rate / (1 - rate)) / math.sqrt(mult.size)
    assert abs(mult.std() / math.sqrt(rate / (1 - rate)) - 1) < 0.01


# ----------------------------------------------------------------------------- SpatialDropout

@pytest.mark.parametrize("cls,shape,fmt", [(SpatialDropout1D, (40, 6, 50), None),
                                           (SpatialDropout2D, (40, 3, 4, 50), None),
                                           (SpatialDropout2D, (40, 50, 3, 4), "channels_first"),
                                           (SpatialDropout3D, (20, 2, 3, 2, 50), None)])
def test_spatial_dropout_drops_whole_feature_maps(cls, shape, fmt):
    rate = 0.4
    x = np.abs(rand(*shape)) + 0.1
    layer = cls(rate) if fmt is None else cls(rate, data_format=fmt)
    np.testing.assert_array_equal(layer(x), x)                  # inference: identity
    y = trace_layer(layer, x, training=True, seed=3, step=4)
    if fmt == "channels_first":
        y, x = np.moveaxis(y, 1, -1), np.moveaxis(x, 1, -1)
    maps = y.reshape(shape[0], -1, y.shape[-1])
    dropped = np.all(maps == 0, axis=1)
    kept = np.all(np.isclose(maps, x.reshape(maps.shape) / (1 - rate), rtol=1e-6), axis=1)
    assert np.all(dropped | kept)                                # whole maps, nothing mixed
    n = dropped.size
    assert abs(dropped.mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / n)


def test_spatial_dropout_configs_match_keras_keys():
    assert set(SpatialDropout1D(0.2).get_config()) == {"rate", "seed", "name", "dtype"}
    cfg = SpatialDropout2D(0.3, seed=5, data_format="channels_first").get_config()
    assert set(cfg) == {"rate", "seed", "name", "dtype", "data_format"}
    clone = SpatialDropout2D.from_config(json.loads(json.dumps(cfg)))
    assert clone.get_config() == cfg
    with pytest.raises(ShapeError):
        SpatialDropout2D(0.5)(Input((4, 5)))


# ----------------------------------------------------------------------------- regularization

def test_activity_regularization_adds_raw_penalty_to_the_loss():
    x = rand(6, 4)
    model = Sequential([Input((4,)), ActivityRegularization(l1=0.01, l2=0.1)])
    model.compile(optimizer=SGD(0.0), loss="mse")
    y = np.zeros_like(x)
    got = model.evaluate(x, y, verbose=0)
    want = np.mean(x ** 2) + 0.01 * np.abs(x).sum() + 0.1 * (x ** 2).sum()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    cfg = ActivityRegularization(l1=0.5).get_config()
    assert cfg["l1"] == 0.5 and cfg["l2"] == 0.0 and "activity_regularizer" not in cfg
    assert ActivityRegularization.from_config(cfg).get_config() == cfg


def test_layer_activity_regularizer_keyword_is_not_divided_by_batch():
    inp = Input((3,))
    d = Dense(2, activity_regularizer="l2", kernel_initializer="ones", name="dar")
    model = Model(inp, d(inp))
    model.compile(optimizer=SGD(0.0), loss="mse")
    x = rand(5, 3)
    out = x @ np.ones((3, 2))
    want = np.mean(out ** 2) + 0.01 * (out ** 2).sum()
    np.testing.assert_allclose(model.evaluate(x, np.zeros((5, 2)), verbose=0), want,
                               rtol=1e-5)


# ----------------------------------------------------------------------------- Dot

def batch_dot_oracle(x, y, a0, a1):
    """Per sample: tensordot over (a0 - 1, a1 - 1); rank-1 results become (batch, 1)."""
    out = np.stack([np.tensordot(x[i].astype(np.float64), y[i].astype(np.float64),
                                 axes=(a0 - 1, a1 - 1)) for i in range(x.shape[0])])
    return out.reshape(x.shape[0], 1) if out.ndim == 1 else out


@pytest.mark.parametrize("xs,ys,axes", [((4, 5), (4, 5), 1), ((4, 5), (4, 5), -1),
                                        ((3, 2, 5), (3, 5, 4), (2, 1)),
                                        ((3, 2, 5), (3, 4, 5), -1),
                                        ((3, 5, 2), (3, 5, 4), 1),
                                        ((2, 3, 4, 5), (2, 5, 6), (3, 1)),
                                        ((2, 3, 4), (2, 6, 4, 5), (2, 2)),
                                        ((2, 4), (2, 3, 4), (1, 2)),
                                        ((2, 3, 4), (2, 4), (2, 1))])
def test_dot_matches_per_sample_tensordot(xs, ys, axes):
    x, y = rand(*xs), rand(*ys)
    pair = (axes, axes) if isinstance(axes, int) else axes
    a0, a1 = pair[0] % len(xs), pair[1] % len(ys)
    want = batch_dot_oracle(x, y, a0, a1)
    layer = Dot(axes=axes)
    got = layer([x, y])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    sym = Dot(axes=axes)([Input(xs[1:]), Input(ys[1:])])
    assert sym.shape == (None,) + want.shape[1:]


def test_dot_normalize_gives_cosine_similarity():
    x, y = rand(6, 8), rand(6, 8)
    x[0] = 0.0                                                   # stays finite
    got = dot([x, y], axes=1, normalize=True)
    nx = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-7)
    ny = np.linalg.norm(y, axis=1, keepdims=True)
    want = ((x / nx) * (y / ny)).sum(1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[0, 0] == 0


def test_dot_in_a_functional_model_and_errors():
    a, b = Input((4,)), Input((4,))
    out = Dot(axes=1)([Dense(4)(a), Dense(4)(b)])
    model = Model([a, b], out)
    assert model.output_shape == (None, 1)
    model.compile(optimizer=SGD(0.01), loss="mse")
    xa, xb = rand(8, 4), rand(8, 4)
    model.fit([xa, xb], np.ones((8, 1)), epochs=2, verbose=0)
    with pytest.raises(ShapeError, match="dot_bad"):
        Dot(axes=1, name="dot_bad")([Input((3,)), Input((4,))])
    with pytest.raises(ShapeError):
        Dot(axes=0)([Input((3,)), Input((3,))])
    with pytest.raises(ValueError):
        Dot(axes=(1, 2, 3))
    with pytest.raises(TypeError):
        Dot(axes="1")


@pytest.mark.parametrize("layer", [Dot(axes=(1, 2), normalize=True), Dot(axes=-1),
                                   GaussianNoise(0.3, seed=4), GaussianDropout(0.2),
                                   RepeatVector(5), Permute((3, 1, 2))])
def test_config_round_trip(layer):
    cfg = layer.get_config()
    clone = layer.__class__.from_config(json.loads(json.dumps(cfg)))
    as_json = lambda c: json.loads(json.dumps(c))  # noqa: E731  (tuples become lists)
    assert as_json(clone.get_config()) == as_json(cfg)


# ----------------------------------------------------------------------------- pipeline

def test_new_layers_survive_decomposition_and_simplification():
    """The optimized train graph (decomposed to primitives, simplified) computes what the
    traced one does, for a model using the layers of this issue in training mode."""
    from graphc.layers import (BatchNormalization, LayerNormalization, PReLU, ReLU, Softmax)
    from graphc.passes import train_step as ts
    from graphc.passes.pipeline import optimize_graph, verify_graph

    a, b = Input((4, 3)), Input((4, 3))
    h = BatchNormalization(axis=1)(GaussianNoise(0.1)(a))
    h = PReLU(shared_axes=[1])(LayerNormalization()(h))
    g = SpatialDropout1D(0.3)(ReLU(max_value=2.0, negative_slope=0.1, threshold=0.2)(b))
    out = Softmax()(Dense(2)(ActivityRegularization(l2=0.01)(
        Dot(axes=(2, 2), normalize=True)([h, Permute((2, 1))(Permute((2, 1))(g))]))))
    model = Model([a, b], out)
    model.compile(optimizer=SGD(0.1), loss="categorical_crossentropy")
    x_types = [TensorType((5, 4, 3), DType.f32)] * 2
    step = ts.build_train_graph(model, x_types, [TensorType((5, 4, 2), DType.f32)])
    raw = verify_graph(step.graph)
    opt = verify_graph(optimize_graph(raw))
    ys = np.eye(2, dtype=np.float32)[RNG.integers(0, 2, (5, 4))]
    inputs = [rand(5, 4, 3), rand(5, 4, 3), ys, np.ones(5, np.float32),
              np.array(77, np.int64)]
    params = [v.numpy() for v in step.params]
    want, got = interpret(raw, inputs, params), interpret(opt, inputs, params)
    assert len(want) == len(got) > len(step.log_names)       # logs + new state
    for w, o in zip(want, got):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)
