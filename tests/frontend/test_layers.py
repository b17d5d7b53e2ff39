"""Layers against independent numpy oracles written here (explicit loops for conv/pooling),
plus Keras weight layouts, naming, building, shape errors and configs."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from graphc.errors import ShapeError
from graphc.frontend.layers.base import reset_name_counters
from graphc.frontend.tracing import TraceContext
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.ir.interpreter import interpret
from graphc.ir.registry import has_op
from graphc.layers import (Activation, Add, Average, AveragePooling2D, Concatenate, Conv2D,
                           Dense, Dropout, Flatten, GlobalAveragePooling2D,
                           GlobalMaxPooling2D, Input, InputLayer, Lambda, Layer,
                           MaxPooling2D, Reshape)
from graphc.layers import deserialize, serialize

RNG = np.random.default_rng(1234)

needs_conv = pytest.mark.skipif(not has_op("conv2d"), reason="conv2d op not registered yet")
needs_pool = pytest.mark.skipif(not has_op("max_pool2d"), reason="pool ops not registered yet")
needs_rand = pytest.mark.skipif(not has_op("random_uniform"),
                                reason="random_uniform op not registered yet")


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- oracles

def same_pads(n, k, s, d=1):
    """TF/Keras 'same': output ceil(n/s), odd padding pixel after."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def conv2d_oracle(x, w, b, strides=(1, 1), padding="valid", dilation=(1, 1), groups=1):
    n, h, wd, cin = x.shape
    kh, kw, cg, cout = w.shape
    sh, sw = strides
    dh, dw = dilation
    if padding == "same":
        (pt, pb), (pl, pr) = same_pads(h, kh, sh, dh), same_pads(wd, kw, sw, dw)
    else:
        pt = pb = pl = pr = 0
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    per_group_out = cout // groups
    y = np.zeros((n, oh, ow, cout), np.float64)
    for bi, i, j, o in itertools.product(range(n), range(oh), range(ow), range(cout)):
        g = o // per_group_out
        acc = 0.0
        for a, c, ci in itertools.product(range(kh), range(kw), range(cg)):
            r, q = i * sh - pt + a * dh, j * sw - pl + c * dw
            if 0 <= r < h and 0 <= q < wd:
                acc += float(x[bi, r, q, g * cg + ci]) * float(w[a, c, ci, o])
        y[bi, i, j, o] = acc + (b[o] if b is not None else 0.0)
    return y


def pool_oracle(x, pool, strides, padding, kind):
    n, h, wd, ch = x.shape
    ph, pw = pool
    sh, sw = strides
    if padding == "same":
        (pt, _), (pl, _) = same_pads(h, ph, sh), same_pads(wd, pw, sw)
        oh, ow = -(-h // sh), -(-wd // sw)
    else:
        pt = pl = 0
        oh, ow = (h - ph) // sh + 1, (wd - pw) // sw + 1
    y = np.zeros((n, oh, ow, ch), np.float64)
    for bi, i, j, c in itertools.product(range(n), range(oh), range(ow), range(ch)):
        vals = [x[bi, r, q, c] for r in range(i * sh - pt, i * sh - pt + ph)
                for q in range(j * sw - pl, j * sw - pl + pw) if 0 <= r < h and 0 <= q < wd]
        y[bi, i, j, c] = max(vals) if kind == "max" else sum(vals) / len(vals)
    return y


def trace_layer(layer, x, training, seed=7, step=0):
    """Run ``layer`` inside a trace with explicit seed/step inputs (as the train-step
    builder does) and return the output and the graph."""
    g = Graph("t")
    s = g.add_input("seed", TensorType((), DType.i64))
    k = g.add_input("step", TensorType((), DType.i64))
    xv = g.add_input("x", TensorType.of(x))
    with TraceContext(g, training=training, seed=s, step=k) as ctx:
        out = layer(xv)
    g.set_outputs([out])
    by_param = {val: var for var, val in ctx.var_values.items()}
    res = interpret(g, [np.array(seed, np.int64), np.array(step, np.int64), x],
                    [by_param[p].value for p in g.params])
    return res[0], g


# ----------------------------------------------------------------------------- Dense

def test_dense_eager_matches_numpy_and_keras_layout():
    layer = Dense(5, activation="relu")
    x = rand(4, 3)
    y = layer(x)
    k, b = layer.get_weights()
    assert k.shape == (3, 5) and b.shape == (5,)
    assert [w.path for w in layer.weights] == [f"{layer.name}.kernel", f"{layer.name}.bias"]
    np.testing.assert_array_equal(b, 0)
    np.testing.assert_allclose(y, np.maximum(x @ k + b, 0), rtol=1e-6, atol=1e-6)
    assert y.dtype == np.float32


def test_dense_on_rank3_applies_to_last_axis():
    layer = Dense(2, activation="tanh")
    layer.build((None, 7, 3))
    layer.set_weights([rand(3, 2), rand(2)])
    x = rand(2, 7, 3)
    k, b = layer.get_weights()
    np.testing.assert_allclose(layer(x), np.tanh(x @ k + b), rtol=1e-5, atol=1e-6)
    out = layer(Input((7, 3)))
    assert out.shape == (None, 7, 2)


def test_dense_without_bias_and_float64_input_is_cast():
    layer = Dense(3, use_bias=False)
    x = RNG.standard_normal((2, 4))          # float64, as users often pass
    y = layer(x)
    assert len(layer.weights) == 1 and y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float32) @ layer.get_weights()[0], rtol=1e-5)


def test_glorot_uniform_default_statistics():
    fan_in, fan_out = 400, 300
    layer = Dense(fan_out)
    layer.build((None, fan_in))
    k = layer.get_weights()[0]
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(k).max() <= limit
    assert np.abs(k).max() > 0.99 * limit
    assert abs(k.mean()) < 0.01 * limit
    np.testing.assert_allclose(k.var(), limit ** 2 / 3, rtol=0.03)


def test_dense_wrong_last_dimension_names_layer_and_shapes():
    layer = Dense(4, name="dense_in8")
    layer.build((None, 8))
    with pytest.raises(ShapeError) as e:
        layer(Input((100,)))
    msg = str(e.value)
    assert msg == ("Dense 'dense_in8': expected input last dimension 8, got 100 "
                   "(input shape (None, 100))")
    with pytest.raises(ValueError, match="dense_in8"):
        layer(np.zeros((2, 100), np.float32))


def test_dense_on_rank1_input_is_rejected():
    with pytest.raises(ShapeError, match=r"Dense 'd1': expected input of rank >= 2, got rank 1"):
        Dense(3, name="d1")(Input(batch_shape=(None,)))


def test_dense_weights_shape_checks_in_set_weights():
    layer = Dense(3, name="setw")
    layer.build((None, 2))
    with pytest.raises(ShapeError) as e:
        layer.set_weights([np.zeros((3, 2)), np.zeros(3)])
    assert "setw" in str(e.value) and "setw.kernel" in str(e.value)
    assert "(2, 3)" in str(e.value) and "(3, 2)" in str(e.value)
    with pytest.raises(ShapeError, match="expects 2 weight array"):
        layer.set_weights([np.zeros((2, 3))])
    before = layer.get_weights()
    with pytest.raises(ShapeError):            # second array wrong: nothing assigned
        layer.set_weights([np.ones((2, 3)), np.ones(4)])
    np.testing.assert_array_equal(layer.get_weights()[0], before[0])
    new = [rand(2, 3), rand(3)]
    layer.set_weights(new)
    for a, b in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    assert layer.get_weights()[0] is not layer.weights[0].value   # a copy


def test_count_params_requires_build():
    layer = Dense(3, name="unb")
    with pytest.raises(ValueError, match="unb"):
        layer.count_params()
    layer.build((None, 4))
    assert layer.count_params() == 4 * 3 + 3


# ----------------------------------------------------------------------------- names

def test_auto_names_are_unique_and_keras_style():
    reset_name_counters()
    assert [Dense(1).name for _ in range(3)] == ["dense", "dense_1", "dense_2"]
    assert Conv2D(1, 1).name == "conv2d"
    assert MaxPooling2D().name == "max_pooling2d"
    assert AveragePooling2D().name == "average_pooling2d"
    assert Dense(1, name="head").name == "head"
    a, b = Input((2,)), Input((3,))
    assert (a.name, b.name) == ("input_layer", "input_layer_1")
    assert Input((2,), name="pixels").name == "pixels"


# ----------------------------------------------------------------------------- trainable

def test_trainable_flag_semantics():
    layer = Dense(2)
    layer.build((None, 3))
    assert len(layer.trainable_weights) == 2 and layer.non_trainable_weights == []
    layer.trainable = False
    assert layer.trainable_weights == []
    assert [v.path for v in layer.non_trainable_weights] == [v.path for v in layer.weights]
    assert all(not v.trainable for v in layer.weights)
    layer.trainable = True
    assert all(v.trainable for v in layer.weights)
    # weights created while frozen start non-trainable
    frozen = Dense(2, trainable=False)
    frozen.build((None, 3))
    assert frozen.trainable_weights == [] and len(frozen.non_trainable_weights) == 2


def test_custom_layer_weights_order_and_add_weight_orders():
    class Custom(Layer):
        def build(self, input_shape):
            self.moving = self.add_weight("moving", (2,), initializer="ones", trainable=False)
            self.w = self.add_weight(shape=(input_shape[-1], 2), initializer="zeros",
                                     name="w")               # Keras 3 keywords
            self.b = self.add_weight((2,), "ones", name="b")   # Keras 3 positional order

        def call(self, x):
            from graphc import ops
            return ops.add(ops.multiply(ops.matmul(x, self.w), self.moving), self.b)

    layer = Custom(name="custom")
    y = layer(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(y, [[1.0, 1.0]])
    # Keras: trainable (creation order) first, then non-trainable
    assert [v.name for v in layer.weights] == ["w", "b", "moving"]
    assert [v.name for v in layer.trainable_weights] == ["w", "b"]
    assert [v.name for v in layer.non_trainable_weights] == ["moving"]


def test_custom_layer_with_compute_output_shape_in_symbolic_call():
    class Twice(Layer):
        def call(self, x):
            from graphc import ops
            return ops.multiply(x, 2.0)

        def compute_output_shape(self, input_shape):
            return input_shape

    out = Twice()(Input((3, 4)))
    assert out.shape == (None, 3, 4)
    np.testing.assert_array_equal(Twice()(np.ones((1, 2), np.float32)), [[2, 2]])


# ----------------------------------------------------------------------------- activation

def test_activation_layer_matches_numpy():
    x = rand(3, 5)
    np.testing.assert_allclose(Activation("tanh")(x), np.tanh(x), rtol=1e-6)
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(Activation("softmax")(x), e / e.sum(-1, keepdims=True),
                               rtol=1e-5)
    np.testing.assert_allclose(Activation("sigmoid")(x), 1 / (1 + np.exp(-x)), rtol=1e-5)
    np.testing.assert_allclose(Dense(3, activation="linear")(x).shape, (3, 3))


# ----------------------------------------------------------------------------- dropout

def test_dropout_inference_is_identity():
    x = rand(4, 6)
    np.testing.assert_array_equal(Dropout(0.5)(x), x)
    np.testing.assert_array_equal(Dropout(0.5)(x, training=False), x)
    y, g = trace_layer(Dropout(0.5), x, training=False)
    np.testing.assert_array_equal(y, x)
    assert "random_uniform" not in g.op_counts()


@needs_rand
def test_dropout_training_drop_rate_and_scaling():
    rate = 0.3
    x = (RNG.random((200, 500)) + 0.5).astype(np.float32)
    layer = Dropout(rate, name="drop_stats")
    y, g = trace_layer(layer, x, training=True)
    assert g.op_counts().get("random_uniform") == 1
    dropped = y == 0
    assert abs(dropped.mean() - rate) < 0.01
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), rtol=1e-6)
    # a pure function of (seed, step, layer): same inputs, same mask; new step, new mask
    y2, _ = trace_layer(layer, x, training=True)
    np.testing.assert_array_equal(y, y2)
    y3, _ = trace_layer(layer, x, training=True, step=1)
    assert (y3 == 0).mean() == pytest.approx(rate, abs=0.01)
    assert ((y3 == 0) != dropped).mean() > 0.2
    y4, _ = trace_layer(Dropout(rate, name="drop_other"), x, training=True)
    assert ((y4 == 0) != dropped).mean() > 0.2
    # the trace's training flag is the default when the call does not say
    y5, _ = trace_layer(layer, x, training=True)
    np.testing.assert_array_equal(y5, y)


@needs_rand
def test_dropout_noise_shape_and_eager_training():
    x = np.ones((64, 10), np.float32)
    y, _ = trace_layer(Dropout(0.5, noise_shape=(None, 1)), x, training=True)
    rows = (y == 0).all(axis=1) | (y == 2).all(axis=1)
    assert rows.all()                          # whole rows dropped or kept
    ye = Dropout(0.5)(x, training=True)        # eager: a fresh seed each call
    assert set(np.unique(ye)) <= {0.0, 2.0}


def test_dropout_rejects_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.5)


# ----------------------------------------------------------------------------- reshaping

def test_flatten_and_reshape_match_numpy():
    x = rand(2, 3, 4, 5)
    np.testing.assert_array_equal(Flatten()(x), x.reshape(2, 60))
    assert Flatten()(Input((3, 4, 5))).shape == (None, 60)
    assert Flatten()(Input(batch_shape=(None,))).shape == (None, 1)
    np.testing.assert_array_equal(Reshape((4, -1))(x), x.reshape(2, 4, 15))
    np.testing.assert_array_equal(Reshape((60,))(x), x.reshape(2, 60))
    assert Reshape((-1, 3))(Input((3, 4))).shape == (None, 4, 3)


def test_reshape_incompatible_target_names_layer():
    with pytest.raises(ShapeError) as e:
        Reshape((5, -1), name="rs")(Input((12,)))
    assert "Reshape 'rs'" in str(e.value) and "(None, 12)" in str(e.value)
    assert "(5, -1)" in str(e.value)
    with pytest.raises(ValueError):
        Reshape((-1, -1))


# ----------------------------------------------------------------------------- conv

@needs_conv
@pytest.mark.parametrize("cfg", [
    dict(kernel_size=3, padding="valid"),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=(2, 3), strides=2, padding="same"),
    dict(kernel_size=(3, 2), strides=(2, 1), padding="valid"),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=2, dilation_rate=(2, 1), padding="valid"),
    dict(kernel_size=3, groups=2, padding="same"),
])
def test_conv2d_matches_explicit_loop(cfg):
    cin, filters = 4, 6
    layer = Conv2D(filters, activation=None, **cfg)
    x = rand(2, 7, 8, cin)
    y = layer(x)
    k, b = layer.get_weights()
    groups = cfg.get("groups", 1)
    ks = cfg["kernel_size"]
    ks = (ks, ks) if isinstance(ks, int) else ks
    assert k.shape == ks + (cin // groups, filters)       # Keras layout HWIO
    assert b.shape == (filters,)
    b = rand(filters)
    layer.set_weights([k, b])
    y = layer(x)
    st = cfg.get("strides", 1)
    dl = cfg.get("dilation_rate", 1)
    ref = conv2d_oracle(x, k, b, st if isinstance(st, tuple) else (st, st), cfg["padding"],
                        dl if isinstance(dl, tuple) else (dl, dl), groups)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    sym = layer(Input((7, 8, cin)))
    assert sym.shape == (None,) + ref.shape[1:]


@needs_conv
def test_conv2d_activation_and_unknown_spatial_dims():
    layer = Conv2D(3, 3, padding="same", activation="relu")
    x = rand(1, 5, 5, 2)
    k, b = layer.get_weights() if layer.built else (None, None)
    y = layer(x)
    k, b = layer.get_weights()
    np.testing.assert_allclose(y, np.maximum(conv2d_oracle(x, k, b, padding="same"), 0),
                               rtol=1e-4, atol=1e-5)
    out = Conv2D(4, 3, strides=2)(Input((None, None, 3)))
    assert out.shape == (None, None, None, 4)


@needs_conv
def test_conv2d_user_errors():
    with pytest.raises(ShapeError) as e:
        Conv2D(4, 3, name="cv")(Input((8,)))
    assert str(e.value) == ("Conv2D 'cv': expected input of rank 4 (batch, height, width, "
                            "channels), got rank 2 (input shape (None, 8))")
    with pytest.raises(ValueError, match="channels_first"):
        Conv2D(4, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="divisible by groups"):
        Conv2D(5, 3, groups=2)
    with pytest.raises(ValueError, match="padding"):
        Conv2D(4, 3, padding="full")
    layer = Conv2D(2, 3, name="cv3")
    layer(Input((6, 6, 3)))
    with pytest.raises(ShapeError, match=r"cv3.*last dimension 3, got 1"):
        layer(Input((6, 6, 1)))
    with pytest.raises(ShapeError, match="cv_small"):
        Conv2D(2, 5, name="cv_small")(Input((3, 3, 1)))


# ----------------------------------------------------------------------------- pooling

@needs_pool
@pytest.mark.parametrize("cls,kind", [(MaxPooling2D, "max"), (AveragePooling2D, "avg")])
@pytest.mark.parametrize("cfg", [
    dict(),
    dict(pool_size=3, strides=2),
    dict(pool_size=(2, 3), strides=(1, 2), padding="same"),
    dict(pool_size=3, strides=2, padding="same"),
])
def test_pooling_matches_explicit_loop(cls, kind, cfg):
    x = rand(2, 7, 6, 3)
    layer = cls(**cfg)
    y = layer(x)
    pool = cfg.get("pool_size", (2, 2))
    pool = (pool, pool) if isinstance(pool, int) else pool
    st = cfg.get("strides", pool)
    st = (st, st) if isinstance(st, int) else st
    ref = pool_oracle(x, pool, st, cfg.get("padding", "valid"), kind)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert layer(Input((7, 6, 3))).shape == (None,) + ref.shape[1:]
    assert layer.weights == []


@needs_pool
def test_pooling_errors():
    with pytest.raises(ShapeError, match=r"MaxPooling2D 'mp': expected input of rank 4"):
        MaxPooling2D(name="mp")(Input((5, 5)))
    with pytest.raises(ShapeError, match="mp2"):
        MaxPooling2D(pool_size=4, name="mp2")(Input((3, 3, 1)))


def test_global_pooling():
    x = rand(2, 3, 4, 5)
    np.testing.assert_allclose(GlobalAveragePooling2D()(x), x.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(GlobalMaxPooling2D()(x), x.max(axis=(1, 2)))
    assert GlobalAveragePooling2D(keepdims=True)(Input((3, 4, 5))).shape == (None, 1, 1, 5)


# ----------------------------------------------------------------------------- merging

def test_merge_layers_match_numpy():
    a, b, c = rand(2, 3), rand(2, 3), rand(2, 4)
    np.testing.assert_allclose(Add()([a, b]), a + b)
    np.testing.assert_allclose(Average()([a, b]), (a + b) / 2, rtol=1e-6)
    np.testing.assert_allclose(Concatenate()([a, c]), np.concatenate([a, c], -1))
    assert Concatenate(axis=1)([Input((3,)), Input((4,))]).shape == (None, 7)
    with pytest.raises(ShapeError, match="add_bad"):
        Add(name="add_bad")([Input((3,)), Input((4,))])


def test_lambda_layer():
    from graphc import ops
    layer = Lambda(lambda t: ops.multiply(t, 3.0))
    np.testing.assert_allclose(layer(np.ones((2, 2), np.float32)), 3.0)
    assert layer(Input((5,))).shape == (None, 5)


# ----------------------------------------------------------------------------- traced

def test_layer_called_on_graph_values_emits_ir():
    layer = Dense(4, activation="relu", name="traced_dense")
    g = Graph("f")
    x = g.add_input("x", TensorType((8, 3), DType.f32))
    with TraceContext(g) as ctx:
        y = layer(x)
    assert layer.built and y.shape == (8, 4)
    assert [p.name for p in g.params] == ["traced_dense.kernel", "traced_dense.bias"]
    assert set(g.op_counts()) >= {"matmul", "add", "relu"}
    assert set(ctx.var_values) == set(layer.weights)


def test_symbolic_call_records_nodes_for_shared_layer():
    layer = Dense(2)
    a, b = Input((3,)), Input((3,))
    ya, yb = layer(a), layer(b)
    assert len(layer._inbound_nodes) == 2
    assert ya._keras_history == (layer, 0, 0) and yb._keras_history == (layer, 1, 0)
    assert ya.shape == (None, 2) and ya.dtype == "float32"
    assert layer.input is a and layer.output is ya and layer.output_shape == (None, 2)


def test_input_layer():
    t = Input(shape=(4, 5), name="img_in", batch_size=8)
    assert t.shape == (8, 4, 5) and t.dtype == "float32"
    layer = t._keras_history.layer
    assert isinstance(layer, InputLayer) and layer.batch_shape == (8, 4, 5)
    assert Input(shape=(3,), dtype="int32").dtype == "int32"
    assert Input(batch_shape=(None, 2)).shape == (None, 2)
    with pytest.raises(ValueError):
        Input()


# ----------------------------------------------------------------------------- configs

CONFIG_LAYERS = [
    lambda: Dense(3, activation="relu", use_bias=False, name="cfg_dense"),
    lambda: Activation("softmax", name="cfg_act"),
    lambda: Dropout(0.25, seed=3, name="cfg_drop"),
    lambda: Flatten(name="cfg_flat"),
    lambda: Reshape((2, -1), name="cfg_rs"),
    lambda: Conv2D(4, (3, 2), strides=2, padding="same", dilation_rate=1, groups=1,
                   activation="tanh", name="cfg_conv"),
    lambda: MaxPooling2D(3, strides=1, padding="same", name="cfg_mp"),
    lambda: AveragePooling2D(name="cfg_ap"),
    lambda: Concatenate(axis=1, name="cfg_cat"),
    lambda: GlobalAveragePooling2D(name="cfg_gap"),
]


@pytest.mark.parametrize("make", CONFIG_LAYERS)
def test_config_round_trip(make):
    layer = make()
    cfg = layer.get_config()
    json.dumps(cfg)                                    # JSON-clean
    assert cfg["name"] == layer.name and cfg["trainable"] is True
    again = type(layer).from_config(cfg)
    assert again.get_config() == cfg
    ser = serialize(layer)
    assert ser["class_name"] == type(layer).__name__ and ser["module"] == "keras.layers"
    assert deserialize(json.loads(json.dumps(ser))).get_config() == cfg


def test_keras_config_keys_and_defaults():
    cfg = Dense(7).get_config()
    assert cfg["units"] == 7 and cfg["activation"] == "linear" and cfg["use_bias"] is True
    assert cfg["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert cfg["bias_initializer"]["class_name"] == "Zeros"
    for k in ("kernel_regularizer", "bias_regularizer", "kernel_constraint",
              "bias_constraint"):
        assert cfg[k] is None
    c = Conv2D(8, 3).get_config()
    assert c["kernel_size"] == [3, 3] and c["strides"] == [1, 1] and c["padding"] == "valid"
    assert c["data_format"] == "channels_last" and c["dilation_rate"] == [1, 1]
    p = MaxPooling2D().get_config()
    assert p["pool_size"] == [2, 2] and p["strides"] == [2, 2] and p["padding"] == "valid"


def test_built_layer_serializes_build_config_and_rebuilds():
    layer = Dense(3, name="bc_dense")
    layer.build((None, 5))
    ser = serialize(layer)
    assert ser["build_config"] == {"input_shape": [None, 5]}
    again = deserialize(ser)
    assert again.built and [w.shape for w in again.weights] == [(5, 3), (3,)]


def test_keras2_style_kwargs_accepted():
    d = Dense(2, input_dim=4)
    assert d._input_shape_arg == (None, 4)
    d = Dense(2, input_shape=(3, 4), batch_size=16)
    assert d._input_shape_arg == (16, 3, 4)
    d = Dense(2, batch_input_shape=(None, 9))
    assert d._input_shape_arg == (None, 9)
    with pytest.raises(TypeError, match="Unrecognized keyword"):
        Dense(2, bogus=1)
    w = [np.ones((3, 2), np.float32), np.zeros(2, np.float32)]
    d = Dense(2, weights=w)                              # Keras 2 initial weights
    np.testing.assert_array_equal(d(np.ones((1, 3), np.float32)), [[3, 3]])
