"""The train-step graph: one graph with forward, loss, backward and update, checked against
a hand-written numpy backprop; the named gradient cut; frozen weights as constants."""
import numpy as np
import pytest

import graphc
from graphc.layers import Dense, Dropout
from graphc.models import Sequential
from graphc.optimizers import SGD
from graphc.passes.pipeline import build_stage
from graphc.utils import set_random_seed


def _mlp(frozen_first=False):
    set_random_seed(1)
    model = Sequential([Dense(5, activation="relu", input_dim=3), Dense(2)])
    if frozen_first:
        model.layers[0].trainable = False
    model.compile(optimizer=SGD(learning_rate=0.1), loss="mse")
    return model


def test_sgd_step_matches_numpy_backprop():
    model = _mlp()
    W1, b1, W2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 3)).astype(np.float32)
    Y = rng.standard_normal((8, 2)).astype(np.float32)
    exe = graphc.compile(model, target="reference")
    logs = exe.train_on_batch(X, Y, return_dict=True)

    # numpy: forward, MSE (mean over outputs, then over the batch), backward, SGD.
    x, y = X.astype(np.float64), Y.astype(np.float64)
    z1 = x @ W1 + b1
    h = np.maximum(z1, 0)
    p = h @ W2 + b2
    loss = np.mean(np.mean((p - y) ** 2, axis=1))
    dp = 2 * (p - y) / p.size
    dW2, db2 = h.T @ dp, dp.sum(0)
    dz1 = (dp @ W2.T) * (z1 > 0)
    dW1, db1 = x.T @ dz1, dz1.sum(0)
    expected = [W1 - 0.1 * dW1, b1 - 0.1 * db1, W2 - 0.1 * dW2, b2 - 0.1 * db2]

    assert logs["loss"] == pytest.approx(loss, rel=1e-5)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert int(model.optimizer.iterations.value) == 1


def test_train_graph_has_a_named_gradient_cut_per_trainable_weight():
    g = build_stage(_mlp(), "train", batch_size=4)
    cuts = [n for n in g.nodes if n.op == "cut"]
    assert len(cuts) == 1 and cuts[0].attrs["name"] == "gradients"
    assert [v.shape for v in cuts[0].inputs] == [(3, 5), (5,), (5, 2), (2,)]
    assert "optimizer.iterations" in g.output_names


def test_frozen_weights_are_not_updated_or_differentiated():
    model = _mlp(frozen_first=True)
    g = build_stage(model, "train", batch_size=4)
    cut = next(n for n in g.nodes if n.op == "cut")
    assert [v.shape for v in cut.inputs] == [(5, 2), (2,)]
    frozen = [w.path for w in model.layers[0].weights]
    assert not set(frozen) & set(g.output_names)
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 3)), rng.standard_normal((16, 2)), epochs=2, verbose=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.array_equal(after[2], before[2])


def test_dropout_mask_depends_on_seed_and_step_only():
    set_random_seed(0)
    model = Sequential([Dropout(0.5, input_shape=(64,)), Dense(1, use_bias=False,
                                                                 kernel_initializer="ones")])
    model.compile(optimizer=SGD(learning_rate=0.0), loss="mse")
    exe = graphc.compile(model, target="reference")
    x, y = np.ones((4, 64), np.float32), np.zeros((4, 1), np.float32)
    first = exe.train_on_batch(x, y)
    second = exe.train_on_batch(x, y)        # next step: another mask
    model.optimizer.iterations.assign(0)
    again = exe.train_on_batch(x, y)         # same seed and step: the same mask
    assert first == again and first != second
    # Inference is the identity: every unit passes, unscaled.
    np.testing.assert_allclose(model.predict(x, verbose=0), 64.0)
