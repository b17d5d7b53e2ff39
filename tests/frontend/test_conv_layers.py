"""Conv1D, Conv2D (dilation, groups), DepthwiseConv1D/2D, SeparableConv1D/2D and
Conv1DTranspose/Conv2DTranspose against independent explicit-loop numpy oracles written
here (transposed conv the way Keras defines it: dilate the input by the stride, pad, and
correlate with the flipped kernel), Keras weight layouts, Keras' transposed-conv output-size
rule, configs, user errors, and the train step's gradient through a Conv2DTranspose vs
finite differences of ``model.evaluate``."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from graphc.errors import ShapeError
from graphc.layers import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Dense,
                           DepthwiseConv1D, DepthwiseConv2D, Flatten, Input, SeparableConv1D,
                           SeparableConv2D, deserialize, serialize)

RNG = np.random.default_rng(4321)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _t(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


# ----------------------------------------------------------------------------- oracles

def same_pads(n, k, s, d=1):
    """TF/Keras 'same': output ceil(n/s), the odd padding pixel after."""
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def pads_for(padding, n, k, s, d):
    if padding == "same":
        return same_pads(n, k, s, d)
    if padding == "causal":
        return (k - 1) * d, 0
    return 0, 0


def conv2d_loops(x, w, strides, pads, dilation, groups=1):
    """Plain grouped cross-correlation, explicit loops, float64; pads ((t, b), (l, r))."""
    n, h, wd, cin = x.shape
    kh, kw, cg, cout = w.shape
    (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = strides, dilation, pads
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    og = cout // groups
    y = np.zeros((n, oh, ow, cout))
    for b, i, j, o in itertools.product(range(n), range(oh), range(ow), range(cout)):
        g = o // og
        for a, c, ci in itertools.product(range(kh), range(kw), range(cg)):
            r, q = i * sh - pt + a * dh, j * sw - pl + c * dw
            if 0 <= r < h and 0 <= q < wd:
                y[b, i, j, o] += float(x[b, r, q, g * cg + ci]) * float(w[a, c, ci, o])
    return y


def conv1d_oracle(x, w, b, stride, padding, dilation, groups):
    n, t, cin = x.shape
    k, cg, f = w.shape
    lo, hi = pads_for(padding, t, k, stride, dilation)
    out = (t + lo + hi - (k - 1) * dilation - 1) // stride + 1
    og = f // groups
    y = np.zeros((n, out, f))
    for bi, i, o in itertools.product(range(n), range(out), range(f)):
        g = o // og
        for a, ci in itertools.product(range(k), range(cg)):
            p = i * stride - lo + a * dilation
            if 0 <= p < t:
                y[bi, i, o] += float(x[bi, p, g * cg + ci]) * float(w[a, ci, o])
    return y + (0 if b is None else b)


def depthwise2d_oracle(x, w, b, strides, padding, dilation):
    """out[..., c*M + m] = sum over the window of x[..., c] * w[a, b, c, m]."""
    n, h, wd, cin = x.shape
    kh, kw, _, mult = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    (pt, pb), (pl, pr) = (pads_for(padding, h, kh, sh, dh), pads_for(padding, wd, kw, sw, dw))
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((n, oh, ow, cin * mult))
    for bi, i, j, c, m in itertools.product(range(n), range(oh), range(ow), range(cin),
                                            range(mult)):
        for a, e in itertools.product(range(kh), range(kw)):
            r, q = i * sh - pt + a * dh, j * sw - pl + e * dw
            if 0 <= r < h and 0 <= q < wd:
                y[bi, i, j, c * mult + m] += float(x[bi, r, q, c]) * float(w[a, e, c, m])
    return y + (0 if b is None else b)


def keras_transpose_len(n, k, s, padding, op, d):
    """Keras' ``_get_output_shape_given_tf_padding``."""
    k = (k - 1) * d + 1
    if padding == "valid":
        return (n - 1) * s + k + (max(k, s) - k if op is None else op)
    return n * s if op is None else (n - 1) * s + k % 2 + op


def keras_transpose_input_pads(k, s, d, padding, op):
    """Keras' ``_convert_conv_transpose_padding_args_from_keras_to_jax``: padding of the
    stride-dilated input."""
    k = (k - 1) * d + 1
    if padding == "valid":
        op = max(k, s) - k if op is None else op
        return k - 1, k - 1 + op
    total = s + k - 2 if op is None else k + k % 2 - 2 + op
    left = min(total // 2 + total % 2, k - 1)
    return left, total - left


def conv_transpose2d_oracle(x, w, b, strides, padding, output_padding, dilation):
    """Keras' transposed conv: dilate x by the stride, pad it, correlate it with the
    spatially flipped kernel (w is (kh, kw, filters, in))."""
    n, h, wd, cin = x.shape
    kh, kw, f, _ = w.shape
    (sh, sw), (dh, dw), (oph, opw) = strides, dilation, output_padding
    lh, rh = keras_transpose_input_pads(kh, sh, dh, padding, oph)
    lw, rw = keras_transpose_input_pads(kw, sw, dw, padding, opw)
    oh = (h - 1) * sh + 1 + lh + rh - ((kh - 1) * dh + 1) + 1
    ow = (wd - 1) * sw + 1 + lw + rw - ((kw - 1) * dw + 1) + 1
    y = np.zeros((n, oh, ow, f))
    for bi, i, j in itertools.product(range(n), range(oh), range(ow)):
        for a, e in itertools.product(range(kh), range(kw)):
            zr, zq = i + a * dh - lh, j + e * dw - lw     # position in the dilated input
            if zr % sh or zq % sw:
                continue                                 # a zero inserted by dilation
            r, q = zr // sh, zq // sw
            if 0 <= r < h and 0 <= q < wd:
                y[bi, i, j, :] += (w[kh - 1 - a, kw - 1 - e].astype(np.float64)
                                   @ x[bi, r, q].astype(np.float64))
    return y + (0 if b is None else b)


# ----------------------------------------------------------------------------- Conv1D

@pytest.mark.parametrize("cfg", [
    dict(kernel_size=3),
    dict(kernel_size=3, padding="same", strides=2),
    dict(kernel_size=2, padding="causal", dilation_rate=2),
    dict(kernel_size=3, padding="causal", strides=2),
    dict(kernel_size=4, padding="same", groups=2, dilation_rate=2),
])
def test_conv1d_matches_explicit_loop(cfg):
    cin, filters = 4, 6
    layer = Conv1D(filters, **cfg)
    x = rand(2, 9, cin)
    layer.build(x.shape)
    k, b = layer.get_weights()
    groups = cfg.get("groups", 1)
    assert k.shape == (cfg["kernel_size"], cin // groups, filters) and b.shape == (filters,)
    b = rand(filters)
    layer.set_weights([k, b])
    y = layer(x)
    ref = conv1d_oracle(x, k, b, cfg.get("strides", 1), cfg.get("padding", "valid"),
                        cfg.get("dilation_rate", 1), groups)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    assert layer(Input((9, cin))).shape == (None,) + ref.shape[1:]


def test_conv1d_causal_output_never_sees_the_future():
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = rand(1, 10, 3)
    y = layer(x)
    x2 = x.copy()
    x2[:, 6:] = rand(1, 4, 3)                          # change steps 6.. only
    np.testing.assert_array_equal(layer(x2)[:, :6], y[:, :6])
    assert y.shape == (1, 10, 2)


def test_conv2d_groups_dilation_and_strides_together():
    layer = Conv2D(6, (3, 2), strides=(2, 1), dilation_rate=(1, 2), groups=3, padding="same")
    x = rand(1, 7, 8, 6)
    layer.build(x.shape)
    k, b = layer.get_weights()
    assert k.shape == (3, 2, 2, 6)
    pads = (same_pads(7, 3, 2, 1), same_pads(8, 2, 1, 2))
    ref = conv2d_loops(x, k, (2, 1), pads, (1, 2), groups=3) + b
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- depthwise

@pytest.mark.parametrize("cfg", [
    dict(kernel_size=3),
    dict(kernel_size=3, depth_multiplier=2, padding="same", strides=2),
    dict(kernel_size=(2, 3), depth_multiplier=3, dilation_rate=(2, 1)),
])
def test_depthwise_conv2d_matches_explicit_loop(cfg):
    cin, m = 3, cfg.get("depth_multiplier", 1)
    layer = DepthwiseConv2D(**cfg)
    x = rand(2, 7, 6, cin)
    layer.build(x.shape)
    k, b = layer.get_weights()
    ks = _t(cfg["kernel_size"], 2)
    assert [w.path.split(".")[-1] for w in layer.weights] == ["kernel", "bias"]
    assert k.shape == ks + (cin, m) and b.shape == (cin * m,)
    b = rand(cin * m)
    layer.set_weights([k, b])
    ref = depthwise2d_oracle(x, k, b, _t(cfg.get("strides", 1), 2),
                             cfg.get("padding", "valid"), _t(cfg.get("dilation_rate", 1), 2))
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-5)
    assert layer(Input((7, 6, cin))).shape == (None,) + ref.shape[1:]


def test_depthwise_conv1d_matches_explicit_loop():
    layer = DepthwiseConv1D(3, strides=2, padding="same", depth_multiplier=2)
    x = rand(2, 9, 3)
    y = layer(x)
    k, b = layer.get_weights()
    assert k.shape == (3, 3, 2) and b.shape == (6,)
    ref = depthwise2d_oracle(x[:, None], k[None], b, (1, 2), "same", (1, 1))[:, 0]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- separable

@pytest.mark.parametrize("cfg", [
    dict(kernel_size=3),
    dict(kernel_size=3, depth_multiplier=2, padding="same", strides=2),
    dict(kernel_size=2, dilation_rate=2, padding="same", use_bias=False),
])
def test_separable_conv2d_matches_explicit_loop(cfg):
    cin, filters, m = 3, 5, cfg.get("depth_multiplier", 1)
    layer = SeparableConv2D(filters, **cfg)
    x = rand(2, 6, 7, cin)
    layer.build(x.shape)
    ws = layer.get_weights()
    names = [w.path.split(".")[-1] for w in layer.weights]
    ks = _t(cfg["kernel_size"], 2)
    assert ws[0].shape == ks + (cin, m) and ws[1].shape == (1, 1, cin * m, filters)
    if cfg.get("use_bias", True):
        assert names == ["depthwise_kernel", "pointwise_kernel", "bias"]
        ws[2] = rand(filters)
        layer.set_weights(ws)
    else:
        assert names == ["depthwise_kernel", "pointwise_kernel"]
    dw = depthwise2d_oracle(x, ws[0], None, _t(cfg.get("strides", 1), 2),
                            cfg.get("padding", "valid"), _t(cfg.get("dilation_rate", 1), 2))
    ref = dw @ ws[1][0, 0].astype(np.float64) + (ws[2] if len(ws) == 3 else 0)
    np.testing.assert_allclose(layer(x), ref, rtol=1e-4, atol=1e-5)


def test_separable_conv1d_matches_explicit_loop():
    layer = SeparableConv1D(4, 3, padding="same", depth_multiplier=2, activation="relu")
    x = rand(2, 8, 3)
    y = layer(x)
    dk, pk, b = layer.get_weights()
    assert dk.shape == (3, 3, 2) and pk.shape == (1, 6, 4) and b.shape == (4,)
    dw = depthwise2d_oracle(x[:, None], dk[None], None, (1, 1), "same", (1, 1))[:, 0]
    np.testing.assert_allclose(y, np.maximum(dw @ pk[0] + b, 0), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- transpose

TRANSPOSE_CFGS = [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2),
    dict(kernel_size=3, strides=2, padding="same"),
    dict(kernel_size=4, strides=2, padding="same"),                 # DCGAN's choice
    dict(kernel_size=5, strides=2, padding="same", output_padding=1),
    dict(kernel_size=3, strides=2, padding="same", output_padding=0),
    dict(kernel_size=3, strides=3, padding="valid", output_padding=2),
    dict(kernel_size=1, strides=3, padding="valid"),                # stride > kernel
    dict(kernel_size=(2, 3), strides=(3, 1), padding="same"),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=2, dilation_rate=(1, 2), padding="valid", output_padding=0),
]


@pytest.mark.parametrize("cfg", TRANSPOSE_CFGS)
def test_conv2d_transpose_matches_keras_definition(cfg):
    cin, filters = 3, 2
    layer = Conv2DTranspose(filters, **cfg)
    x = rand(2, 4, 5, cin)
    layer.build(x.shape)
    k, b = layer.get_weights()
    ks = _t(cfg["kernel_size"], 2)
    assert k.shape == ks + (filters, cin) and b.shape == (filters,)      # (kh, kw, out, in)
    b = rand(filters)
    layer.set_weights([k, b])
    y = layer(x)
    st, dl = _t(cfg.get("strides", 1), 2), _t(cfg.get("dilation_rate", 1), 2)
    op = cfg.get("output_padding")
    op = (None, None) if op is None else _t(op, 2)
    pad = cfg.get("padding", "valid")
    ref = conv_transpose2d_oracle(x, k, b, st, pad, op, dl)
    want_hw = tuple(keras_transpose_len(n, kk, s, pad, o, d)
                    for n, kk, s, o, d in zip((4, 5), ks, st, op, dl))
    assert ref.shape[1:3] == want_hw                  # the oracle obeys Keras' size rule
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    assert layer(Input((4, 5, cin))).shape == (None,) + want_hw + (filters,)


@pytest.mark.parametrize("in_hw,cfg,out_hw", [
    ((7, 7), dict(kernel_size=5, strides=2, padding="same"), (14, 14)),
    ((7, 7), dict(kernel_size=3, strides=2, padding="valid"), (15, 15)),
    ((7, 7), dict(kernel_size=3, strides=2, padding="valid", output_padding=1), (16, 16)),
    ((7, 7), dict(kernel_size=3, strides=2, padding="same", output_padding=0), (13, 13)),
    ((7, 7), dict(kernel_size=4, strides=2, padding="same", output_padding=1), (13, 13)),
    ((7, 7), dict(kernel_size=5, strides=2, padding="same", output_padding=1), (14, 14)),
    ((4, 6), dict(kernel_size=(1, 2), strides=(3, 4), padding="valid"), (12, 24)),
    ((5, 5), dict(kernel_size=3, dilation_rate=2, padding="valid"), (9, 9)),
])
def test_conv2d_transpose_output_shapes_follow_keras(in_hw, cfg, out_hw):
    out = Conv2DTranspose(4, **cfg)(Input(in_hw + (3,)))
    assert out.shape == (None,) + out_hw + (4,)
    unknown = Conv2DTranspose(4, **cfg)(Input((None, None, 3)))
    assert unknown.shape == (None, None, None, 4)


@pytest.mark.parametrize("cfg", [
    dict(kernel_size=3, strides=2),
    dict(kernel_size=4, strides=2, padding="same"),
    dict(kernel_size=3, strides=3, padding="same", output_padding=1),
    dict(kernel_size=2, dilation_rate=3, padding="valid"),
])
def test_conv1d_transpose_matches_keras_definition(cfg):
    layer = Conv1DTranspose(2, activation="tanh", **cfg)
    x = rand(2, 5, 3)
    y = layer(x)
    k, b = layer.get_weights()
    assert k.shape == (cfg["kernel_size"], 2, 3)
    op = cfg.get("output_padding")
    ref = conv_transpose2d_oracle(x[:, None], k[None], b, (1, cfg.get("strides", 1)),
                                  cfg.get("padding", "valid"), (None, op),
                                  (1, cfg.get("dilation_rate", 1)))[:, 0]
    np.testing.assert_allclose(y, np.tanh(ref), rtol=1e-4, atol=1e-5)


def test_conv2d_transpose_gradient_matches_finite_differences():
    """The train step's kernel/bias gradients (read off one plain-SGD step with lr=1) vs
    central differences of ``model.evaluate``'s loss — through the backprop_input forward
    and its VJPs (conv2d for the input, backprop_filter for the kernel)."""
    from graphc.models import Sequential
    from graphc.optimizers import SGD
    model = Sequential([Input((3, 3, 2)),
                        Conv2DTranspose(2, 3, strides=2, padding="same", name="up"),
                        Flatten(), Dense(1, name="head")])
    model.compile(optimizer=SGD(learning_rate=1.0), loss="mse")
    x, y = rand(4, 3, 3, 2), rand(4, 1)
    w0 = [w.copy() for w in model.get_weights()]
    model.train_on_batch(x, y)
    grads = [a - b for a, b in zip(w0, model.get_weights())]

    def loss_at(ws):
        model.set_weights(ws)
        return float(model.evaluate(x, y, batch_size=4, verbose=0))

    eps = 1e-2
    for wi in (0, 1):                                   # up.kernel, up.bias
        flat = list(np.ndindex(w0[wi].shape))
        for pos in [flat[i] for i in RNG.choice(len(flat), size=min(6, len(flat)),
                                                 replace=False)]:
            plus = [w.copy() for w in w0]
            minus = [w.copy() for w in w0]
            plus[wi][pos] += eps
            minus[wi][pos] -= eps
            fd = (loss_at(plus) - loss_at(minus)) / (2 * eps)
            assert grads[wi][pos] == pytest.approx(fd, rel=2e-2, abs=2e-3), (wi, pos)


# ----------------------------------------------------------------------------- errors/configs

def test_user_errors_name_the_layer():
    with pytest.raises(ShapeError, match=r"Conv1D 'c1': expected input of rank 3 "
                                         r"\(batch, steps, channels\), got rank 4"):
        Conv1D(2, 3, name="c1")(Input((5, 5, 1)))
    with pytest.raises(ValueError, match="'valid', 'same' or 'causal'"):
        Conv1D(2, 3, padding="full")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        Conv2D(2, 3, padding="causal")
    with pytest.raises(ValueError, match="output_padding must be >= 0 and < strides"):
        Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="depth_multiplier"):
        DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match="channels_first"):
        SeparableConv2D(2, 3, data_format="channels_first")
    with pytest.raises(ShapeError, match="dw_small"):
        DepthwiseConv2D(5, name="dw_small")(Input((3, 3, 2)))
    layer = Conv2DTranspose(2, 3, name="ct")
    layer(Input((4, 4, 3)))
    with pytest.raises(ShapeError, match=r"ct.*last dimension 3, got 1"):
        layer(Input((4, 4, 1)))


CONFIG_LAYERS = [
    lambda: Conv1D(4, 3, strides=2, padding="causal", dilation_rate=1, groups=2,
                   activation="relu", name="cfg_c1"),
    lambda: Conv2D(4, 3, dilation_rate=2, groups=2, use_bias=False, name="cfg_c2"),
    lambda: DepthwiseConv2D((3, 2), depth_multiplier=2, padding="same", name="cfg_dw"),
    lambda: DepthwiseConv1D(3, strides=2, name="cfg_dw1"),
    lambda: SeparableConv2D(8, 3, depth_multiplier=2, activation="tanh", name="cfg_sep"),
    lambda: SeparableConv1D(8, 3, name="cfg_sep1"),
    lambda: Conv2DTranspose(3, 4, strides=2, padding="same", output_padding=1, name="cfg_ct"),
    lambda: Conv1DTranspose(3, 4, strides=2, name="cfg_ct1"),
]


@pytest.mark.parametrize("make", CONFIG_LAYERS)
def test_config_round_trip(make):
    layer = make()
    cfg = layer.get_config()
    json.dumps(cfg)
    again = type(layer).from_config(cfg)
    assert again.get_config() == cfg
    ser = serialize(layer)
    assert ser["class_name"] == type(layer).__name__
    assert deserialize(json.loads(json.dumps(ser))).get_config() == cfg


def test_keras_config_keys():
    c = Conv1D(8, 3).get_config()
    assert c["kernel_size"] == [3] and c["strides"] == [1] and c["dilation_rate"] == [1]
    assert c["groups"] == 1 and c["padding"] == "valid"
    t = Conv2DTranspose(8, 3).get_config()
    assert t["output_padding"] is None and t["kernel_size"] == [3, 3]
    assert "groups" not in t
    d = DepthwiseConv2D(3).get_config()
    assert d["depth_multiplier"] == 1 and d["depthwise_initializer"]["class_name"] == \
        "GlorotUniform" and "depthwise_constraint" in d and "filters" not in d
    s = SeparableConv2D(4, 3).get_config()
    for key in ("depthwise_initializer", "pointwise_initializer", "depthwise_regularizer",
                "pointwise_regularizer", "depthwise_constraint", "pointwise_constraint",
                "bias_constraint", "depth_multiplier", "filters"):
        assert key in s
