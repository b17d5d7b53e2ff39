"""MaxPooling1D/AveragePooling1D, GlobalAverage/MaxPooling1D/2D, UpSampling1D/2D (nearest
and bilinear), ZeroPadding1D/2D and Cropping1D/2D against independent numpy written here
(explicit loops for the windows and the bilinear taps), their output shapes, configs and
user errors, and gradients flowing through them in a train step."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from graphc.errors import ShapeError
from graphc.layers import (AveragePooling1D, Conv2D, Cropping1D, Cropping2D, Dense, Flatten,
                           GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D,
                           GlobalMaxPooling2D, Input, MaxPooling1D, UpSampling1D, UpSampling2D,
                           ZeroPadding1D, ZeroPadding2D, deserialize, serialize)

RNG = np.random.default_rng(2024)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- 1-D pooling

def pool1d_oracle(x, pool, stride, padding, kind):
    n, t, c = x.shape
    if padding == "same":
        out = -(-t // stride)
        total = max((out - 1) * stride + pool - t, 0)
        lo = total // 2
    else:
        out, lo = (t - pool) // stride + 1, 0
    y = np.zeros((n, out, c))
    for b, i, ch in itertools.product(range(n), range(out), range(c)):
        vals = [float(x[b, p, ch]) for p in range(i * stride - lo, i * stride - lo + pool)
                if 0 <= p < t]
        y[b, i, ch] = max(vals) if kind == "max" else sum(vals) / len(vals)
    return y


@pytest.mark.parametrize("cls,kind", [(MaxPooling1D, "max"), (AveragePooling1D, "avg")])
@pytest.mark.parametrize("cfg", [
    dict(),
    dict(pool_size=3, strides=2),
    dict(pool_size=3, padding="same"),
    dict(pool_size=2, strides=1, padding="same"),
    dict(pool_size=4, strides=3, padding="same"),
])
def test_pooling1d_matches_explicit_loop(cls, kind, cfg):
    x = rand(2, 9, 3)
    layer = cls(**cfg)
    pool = cfg.get("pool_size", 2)
    ref = pool1d_oracle(x, pool, cfg.get("strides") or pool, cfg.get("padding", "valid"), kind)
    np.testing.assert_allclose(layer(x), ref, rtol=1e-5, atol=1e-6)
    assert layer(Input((9, 3))).shape == (None,) + ref.shape[1:]
    assert layer(Input((None, 3))).shape == (None, None, 3)


def test_pooling1d_errors_name_the_layer():
    with pytest.raises(ShapeError, match=r"MaxPooling1D 'mp1': expected input of rank 3 "
                                         r"\(batch, steps, channels\)"):
        MaxPooling1D(name="mp1")(Input((4, 4, 1)))
    with pytest.raises(ShapeError, match="mp1_small"):
        MaxPooling1D(5, name="mp1_small")(Input((3, 2)))


def test_global_pooling_1d_and_2d():
    x = rand(2, 5, 3)
    np.testing.assert_allclose(GlobalAveragePooling1D()(x), x.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(GlobalMaxPooling1D()(x), x.max(axis=1))
    np.testing.assert_allclose(GlobalAveragePooling1D(keepdims=True)(x),
                               x.mean(axis=1, keepdims=True), rtol=1e-6)
    assert GlobalMaxPooling1D(keepdims=True)(Input((None, 4))).shape == (None, 1, 4)
    assert GlobalAveragePooling1D()(Input((7, 4))).shape == (None, 4)
    x4 = rand(2, 3, 4, 5)
    np.testing.assert_array_equal(GlobalMaxPooling2D(keepdims=True)(x4),
                                  x4.max(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(GlobalAveragePooling2D()(x4), x4.mean(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ShapeError, match="rank 3"):
        GlobalAveragePooling1D()(Input((3, 4, 5)))


# ----------------------------------------------------------------------------- upsampling

def bilinear_oracle(x, sh, sw):
    """Per output pixel, TF-style half-pixel bilinear: source ``(o + 0.5) / s - 0.5``
    clamped to >= 0, neighbours ``floor`` and ``min(floor + 1, n - 1)``."""
    n, h, w, c = x.shape
    y = np.zeros((n, h * sh, w * sw, c))

    def taps(o, s, size):
        src = max((o + 0.5) / s - 0.5, 0.0)
        lo = min(int(math.floor(src)), size - 1)
        return lo, min(lo + 1, size - 1), src - math.floor(src)

    for i, j in itertools.product(range(h * sh), range(w * sw)):
        r0, r1, fr = taps(i, sh, h)
        c0, c1, fc = taps(j, sw, w)
        top = x[:, r0, c0] * (1 - fc) + x[:, r0, c1] * fc
        bot = x[:, r1, c0] * (1 - fc) + x[:, r1, c1] * fc
        y[:, i, j] = top * (1 - fr) + bot * fr
    return y


@pytest.mark.parametrize("size", [2, (2, 3), (1, 2)])
def test_upsampling2d_nearest_and_bilinear(size):
    x = rand(2, 3, 4, 2)
    sh, sw = (size, size) if isinstance(size, int) else size
    near = UpSampling2D(size)(x)
    np.testing.assert_array_equal(near, np.repeat(np.repeat(x, sh, axis=1), sw, axis=2))
    bil = UpSampling2D(size, interpolation="bilinear")(x)
    np.testing.assert_allclose(bil, bilinear_oracle(x, sh, sw), rtol=1e-5, atol=1e-6)
    assert UpSampling2D(size)(Input((3, 4, 2))).shape == (None, 3 * sh, 4 * sw, 2)
    assert UpSampling2D(size)(Input((None, 4, 2))).shape == (None, None, 4 * sw, 2)


def test_upsampling1d_and_unsupported_interpolation():
    x = rand(2, 4, 3)
    np.testing.assert_array_equal(UpSampling1D(3)(x), np.repeat(x, 3, axis=1))
    assert UpSampling1D()(Input((5, 3))).shape == (None, 10, 3)
    with pytest.raises(NotImplementedError, match="bicubic"):
        UpSampling2D(interpolation="bicubic")
    with pytest.raises(ValueError, match="interpolation"):
        UpSampling2D(interpolation="fancy")
    with pytest.raises(ValueError, match="size"):
        UpSampling2D(size=(0, 2))


# ----------------------------------------------------------------------------- padding, cropping

@pytest.mark.parametrize("padding,pads", [
    (1, ((1, 1), (1, 1))),
    ((2, 0), ((2, 2), (0, 0))),
    (((1, 0), (2, 3)), ((1, 0), (2, 3))),
])
def test_zero_padding_and_cropping_2d(padding, pads):
    x = rand(2, 6, 7, 3)
    y = ZeroPadding2D(padding)(x)
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0),) + pads + ((0, 0),)))
    (t, b), (l, r) = pads
    c = Cropping2D(padding)(x)
    np.testing.assert_array_equal(c, x[:, t:6 - b, l:7 - r, :])
    assert ZeroPadding2D(padding)(Input((6, 7, 3))).shape == (None, 6 + t + b, 7 + l + r, 3)
    assert Cropping2D(padding)(Input((6, 7, 3))).shape == (None, 6 - t - b, 7 - l - r, 3)
    np.testing.assert_array_equal(Cropping2D(padding)(y), x)   # crop undoes the pad


def test_zero_padding_and_cropping_1d():
    x = rand(2, 6, 3)
    np.testing.assert_array_equal(ZeroPadding1D()(x), np.pad(x, ((0, 0), (1, 1), (0, 0))))
    np.testing.assert_array_equal(ZeroPadding1D((0, 2))(x),
                                  np.pad(x, ((0, 0), (0, 2), (0, 0))))
    np.testing.assert_array_equal(Cropping1D()(x), x[:, 1:5])
    np.testing.assert_array_equal(Cropping1D((2, 0))(x), x[:, 2:])
    assert Cropping1D((1, 2))(Input((None, 3))).shape == (None, None, 3)


def test_padding_and_cropping_errors():
    with pytest.raises(ShapeError, match=r"Cropping2D 'crop_big': cropping .* leaves nothing"):
        Cropping2D(((2, 2), (0, 0)), name="crop_big")(Input((4, 5, 1)))
    with pytest.raises(ShapeError, match="crop1_big"):
        Cropping1D((3, 3), name="crop1_big")(Input((6, 2)))
    with pytest.raises(ValueError, match="padding"):
        ZeroPadding2D(((1, 2, 3), (0, 0)))
    with pytest.raises(ValueError, match="cropping"):
        Cropping1D(-1)
    with pytest.raises(ShapeError, match="rank 4"):
        ZeroPadding2D()(Input((4, 4)))


# ----------------------------------------------------------------------------- training

def test_gradients_flow_through_padding_cropping_and_upsampling():
    """The train step's Conv2D kernel gradient, read off one lr=1 SGD step, vs central
    differences of model.evaluate, with pad/crop/upsample (bilinear) between conv and head."""
    from graphc.models import Sequential
    from graphc.optimizers import SGD
    model = Sequential([Input((4, 4, 1)), Conv2D(2, 2, name="cv"),
                        ZeroPadding2D(((1, 0), (0, 1))), UpSampling2D(interpolation="bilinear"),
                        Cropping2D(((1, 2), (0, 1))), Flatten(), Dense(1)])
    model.compile(optimizer=SGD(learning_rate=1.0), loss="mse")
    x, y = rand(3, 4, 4, 1), rand(3, 1)
    w0 = [w.copy() for w in model.get_weights()]
    model.train_on_batch(x, y)
    grad = w0[0] - model.get_weights()[0]
    eps = 1e-2
    for pos in list(np.ndindex(w0[0].shape))[::2]:
        ws = [[w.copy() for w in w0] for _ in range(2)]
        ws[0][0][pos] += eps
        ws[1][0][pos] -= eps
        losses = []
        for w in ws:
            model.set_weights(w)
            losses.append(float(model.evaluate(x, y, batch_size=3, verbose=0)))
        fd = (losses[0] - losses[1]) / (2 * eps)
        assert grad[pos] == pytest.approx(fd, rel=2e-2, abs=2e-3), pos


# ----------------------------------------------------------------------------- configs

CONFIG_LAYERS = [
    lambda: MaxPooling1D(3, strides=1, padding="same", name="cfg_mp1"),
    lambda: AveragePooling1D(name="cfg_ap1"),
    lambda: GlobalAveragePooling1D(keepdims=True, name="cfg_gap1"),
    lambda: GlobalMaxPooling1D(name="cfg_gmp1"),
    lambda: GlobalMaxPooling2D(keepdims=True, name="cfg_gmp2"),
    lambda: UpSampling1D(3, name="cfg_up1"),
    lambda: UpSampling2D((2, 3), interpolation="bilinear", name="cfg_up2"),
    lambda: ZeroPadding1D((1, 2), name="cfg_zp1"),
    lambda: ZeroPadding2D(((1, 0), (2, 3)), name="cfg_zp2"),
    lambda: Cropping1D((0, 2), name="cfg_cr1"),
    lambda: Cropping2D(1, name="cfg_cr2"),
]


@pytest.mark.parametrize("make", CONFIG_LAYERS)
def test_config_round_trip(make):
    layer = make()
    cfg = layer.get_config()
    json.dumps(cfg)
    again = type(layer).from_config(cfg)
    assert again.get_config() == cfg
    assert deserialize(json.loads(json.dumps(serialize(layer)))).get_config() == cfg


def test_keras_config_values():
    p = MaxPooling1D().get_config()
    assert p["pool_size"] == [2] and p["strides"] == [2] and p["padding"] == "valid"
    assert UpSampling2D().get_config()["size"] == [2, 2]
    assert UpSampling2D().get_config()["interpolation"] == "nearest"
    assert UpSampling1D().get_config()["size"] == 2
    assert ZeroPadding2D().get_config()["padding"] == [[1, 1], [1, 1]]
    assert ZeroPadding1D().get_config()["padding"] == [1, 1]
    assert Cropping2D().get_config()["cropping"] == [[0, 0], [0, 0]]
    assert Cropping1D().get_config()["cropping"] == [1, 1]
    assert "data_format" not in Cropping1D().get_config()
