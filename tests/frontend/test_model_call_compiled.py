"""``model(x)`` on arrays: the first calls with an input signature trace and interpret the
graph (eager, no compile); once the signature comes back, inference calls run the compiled
model. The oracle is the eager path itself (the reference interpreter), call by call."""
from __future__ import annotations

import numpy as np

from graphc.layers import BatchNormalization, Dense, Dropout, Input
from graphc.models import Model, Sequential
from graphc.utils import set_random_seed


def _eager(model, x, **kw):
    """What the eager path returns for this call (bypassing the compiled switch)."""
    return super(Model, model)._call_eager((x,), kw, kw.pop("training", None))


def test_repeated_inference_calls_switch_to_the_compiled_model():
    set_random_seed(0)
    m = Sequential([Dense(16, activation="relu", input_dim=8), Dropout(0.5),
                    BatchNormalization(), Dense(3, activation="softmax")])
    rng = np.random.default_rng(0)
    xs = [rng.random((1, 8), dtype=np.float32) for _ in range(5)]
    outs = [m(x) for x in xs]
    assert m._executable is not None            # calls 3-5 ran compiled ...
    for x, y in zip(xs, outs):
        assert isinstance(y, np.ndarray) and y.shape == (1, 3)
        np.testing.assert_allclose(y, _eager(m, x), rtol=1e-5, atol=1e-6)
    x64 = rng.random((2, 8))                     # ... a new signature starts eager again
    np.testing.assert_allclose(m(x64), _eager(m, x64.astype(np.float32)), rtol=1e-5,
                               atol=1e-6)


def test_training_calls_stay_eager_and_update_statistics():
    set_random_seed(1)
    m = Sequential([Dense(4, input_dim=3), BatchNormalization()])
    bn = m.layers[1]
    x = np.random.default_rng(1).random((6, 3), dtype=np.float32) * 5
    for _ in range(4):
        before = bn.moving_mean.numpy()
        m(x, training=True)
        assert not np.allclose(bn.moving_mean.numpy(), before)
    assert m._executable is None


def test_multi_input_lists_compile_and_dict_outputs_do_not():
    set_random_seed(2)
    a, b = Input((4,)), Input((2,))
    h = Dense(5, activation="tanh")(a)
    two = Model([a, b], [Dense(1)(h), Dense(2)(b)])
    rng = np.random.default_rng(2)
    xa, xb = rng.random((3, 4), dtype=np.float32), rng.random((3, 2), dtype=np.float32)
    for _ in range(4):
        got = two([xa, xb])
    assert two._executable is not None
    want = _eager(two, [xa, xb])
    assert isinstance(got, list) and len(got) == 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    named = Model(a, {"out": Dense(2)(h)})
    for _ in range(4):
        res = named(xa)
    assert isinstance(res, dict) and named._executable is None
