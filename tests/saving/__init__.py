"""Tests of ``graphc.saving``; shared helpers (small models, exact comparisons, a training
step run identically on two models)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import graphc
from graphc import layers, optimizers

FIXTURES = Path(__file__).parent / "fixtures"


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def onehot(n, k, seed=0):
    return graphc.utils.to_categorical(np.random.default_rng(seed).integers(0, k, n), k)


# -- models -----------------------------------------------------------------------------

def mlp(optimizer="adam", dropout=True):
    """Sequential Dense MLP (with Dropout): x (8,) -> softmax (3,)."""
    stack = [layers.Input((8,)), layers.Dense(6, activation="relu", name="hidden")]
    if dropout:
        stack.append(layers.Dropout(0.3))
    stack += [layers.Dense(5, activation="tanh"), layers.Dense(3, activation="softmax",
                                                               name="probs")]
    m = graphc.Sequential(stack, name="mlp")
    m.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return m, [rand(12, 8, seed=1)], [onehot(12, 3, seed=2)]


def cnn(optimizer=None):
    """Conv2D/pooling/Dropout/BatchNormalization CNN, keras 2-style first-layer shape."""
    m = graphc.Sequential(name="cnn")
    m.add(layers.Conv2D(3, (3, 3), activation="relu", padding="same", input_shape=(8, 8, 2)))
    m.add(layers.MaxPooling2D((2, 2)))
    m.add(layers.BatchNormalization())
    m.add(layers.Conv2D(4, 2, strides=2, name="conv_b"))
    m.add(layers.AveragePooling2D(1))
    m.add(layers.Dropout(0.25))
    m.add(layers.Flatten())
    m.add(layers.Dense(2, activation="softmax"))
    m.compile(optimizer=optimizer or optimizers.RMSprop(learning_rate=0.01, momentum=0.9,
                                                        centered=True),
              loss="categorical_crossentropy", metrics=["accuracy"])
    return m, [rand(6, 8, 8, 2, seed=3)], [onehot(6, 2, seed=4)]


def multi_io(optimizer=None):
    """Functional: two inputs, two outputs, Concatenate and Add, per-output losses."""
    a = layers.Input((4,), name="a")
    b = layers.Input((5,), name="b")
    ha = layers.Dense(3, activation="relu", name="da")(a)
    hb = layers.Dense(3, name="db")(b)
    z = layers.Concatenate()([ha, hb])
    z = layers.Dropout(0.5)(z)
    o1 = layers.Dense(1, name="out1")(z)
    o2 = layers.Dense(2, activation="softmax", name="out2")(layers.Add()([ha, hb]))
    m = graphc.Model([a, b], [o1, o2], name="multi")
    m.compile(optimizer=optimizer or optimizers.SGD(learning_rate=0.05, momentum=0.9,
                                                    nesterov=True),
              loss=["mse", "categorical_crossentropy"], loss_weights=[0.5, 1.0],
              metrics=[["mae"], ["accuracy"]])
    return m, [rand(6, 4, seed=5), rand(6, 5, seed=6)], [rand(6, 1, seed=7),
                                                         onehot(6, 2, seed=8)]


def nested(optimizer=None):
    """A Sequential inside a functional model inside another functional model."""
    inner = graphc.Sequential([layers.Input((4,)), layers.Dense(3, activation="relu"),
                               layers.Dense(3)], name="inner_seq")
    x = layers.Input((4,), name="x_in")
    mid = graphc.Model(x, layers.Dense(2, name="mid_head")(inner(x)), name="middle")
    top_in = layers.Input((4,), name="top_in")
    h = mid(top_in)
    out = layers.Dense(1, name="top_head")(layers.Concatenate()([h, top_in]))
    m = graphc.Model(top_in, out, name="outer")
    m.compile(optimizer=optimizer or optimizers.Adam(learning_rate=0.01, amsgrad=True),
              loss="mse")
    return m, [rand(7, 4, seed=9)], [rand(7, 1, seed=10)]


def frozen(optimizer=None):
    """Transfer learning: a frozen base (trainable=False) under a trainable head."""
    base = graphc.Sequential([layers.Input((6,)), layers.Dense(5, activation="relu"),
                              layers.Dense(4, activation="relu")], name="base")
    base.trainable = False
    inp = layers.Input((6,), name="inp")
    h = base(inp)
    h = layers.Dense(4, activation="relu", name="frozen_dense", trainable=False)(h)
    out = layers.Dense(1, activation="sigmoid", name="head")(h)
    m = graphc.Model(inp, out, name="transfer")
    m.compile(optimizer=optimizer or optimizers.Adagrad(learning_rate=0.1),
              loss="binary_crossentropy", metrics=["accuracy"])
    y = (np.random.default_rng(11).random((8, 1)) > 0.5).astype(np.float32)
    return m, [rand(8, 6, seed=12)], [y]


MODELS = {"mlp": mlp, "cnn": cnn, "multi_io": multi_io, "nested": nested, "frozen": frozen}


# -- helpers ----------------------------------------------------------------------------

def one(xs):
    return xs if len(xs) > 1 else xs[0]


def fit_a_little(model, xs, ys, steps=2):
    exe = graphc.compile(model, target="reference")
    for _ in range(steps):
        exe.train_on_batch(one(xs), one(ys))
    return exe


def predict(model, xs):
    out = graphc.compile(model, target="reference").predict(one(xs), verbose=0)
    return out if isinstance(out, list) else [out]


def assert_same_arrays(a_list, b_list):
    assert len(a_list) == len(b_list)
    for a, b in zip(a_list, b_list):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        assert np.array_equal(a, b), float(np.abs(a.astype(np.float64) - b).max())


def optimizer_state(model):
    return [np.asarray(v.value).copy() for v in model.optimizer.variables]


def train_step_both(m1, m2, xs, ys):
    """One training step on each model with the same dropout seed; return the weights."""
    e1 = graphc.compile(m1, target="reference")
    e2 = graphc.compile(m2, target="reference")
    e2.seed = np.array(e1.seed, copy=True)
    e1.train_on_batch(one(xs), one(ys))
    e2.train_on_batch(one(xs), one(ys))
    return m1.get_weights(), m2.get_weights()
