"""Embedding: the lookup vs numpy indexing, integer inputs reaching the gather unchanged
(float ones truncated as Keras does), out-of-range indices, Keras weight shape/initializer
and config, the train step's gradient with duplicate indices vs the numpy formula, and an
Embedding -> GlobalAveragePooling1D -> Dense model learning from int data via ``fit``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from graphc.frontend.tracing import TraceContext
from graphc.ir.dtypes import DType, TensorType
from graphc.ir.graph import Graph
from graphc.layers import (Dense, Embedding, Flatten, GlobalAveragePooling1D, Input,
                           deserialize, serialize)
from graphc.models import Model, Sequential
from graphc.optimizers import SGD, Adam
from graphc.utils import set_random_seed

RNG = np.random.default_rng(99)


def test_eager_lookup_matches_numpy_and_keras_weights():
    layer = Embedding(10, 4)
    idx = RNG.integers(0, 10, size=(3, 5)).astype(np.int32)
    y = layer(idx)
    (e,) = layer.get_weights()
    assert [w.path for w in layer.weights] == [f"{layer.name}.embeddings"]
    assert e.shape == (10, 4) and e.dtype == np.float32
    # Keras 3 default "uniform" = RandomUniform(-0.05, 0.05)
    assert np.all(np.abs(e) <= 0.05) and e.std() > 0.01
    assert y.shape == (3, 5, 4) and y.dtype == np.float32
    np.testing.assert_array_equal(y, e[idx])
    np.testing.assert_array_equal(layer(idx.astype(np.int64)), e[idx])
    np.testing.assert_array_equal(layer(np.array([7, 2])), e[[7, 2]])   # rank-1 input


def test_float_indices_are_truncated_and_out_of_range_gives_zeros():
    e = RNG.standard_normal((6, 3)).astype(np.float32)
    layer = Embedding(6, 3, weights=[e])               # Keras: weights given -> built now
    assert layer.built
    np.testing.assert_array_equal(layer(np.array([[1.0, 4.9, 0.2]], np.float32)),
                                  e[[[1, 4, 0]]])
    y = layer(np.array([[5, 6, -1, 100]], np.int32))
    np.testing.assert_array_equal(y[0, 0], e[5])
    np.testing.assert_array_equal(y[0, 1:], 0)         # documented: zeros, not an error


def test_int_inputs_reach_the_gather_without_a_cast():
    layer = Embedding(8, 2, name="emb_trace")
    for dt in (DType.i32, DType.i64):
        g = Graph("t")
        x = g.add_input("x", TensorType((4, 3), dt))
        with TraceContext(g):
            out = layer(x)
        assert out.shape == (4, 3, 2) and out.dtype == DType.f32
        ops = [n.op for n in g.nodes if n.op != "constant"]
        assert ops == ["gather"], ops                  # no cast to float and back
        assert g.nodes[-1].inputs[1] is x
    g = Graph("f")
    x = g.add_input("x", TensorType((4, 3), DType.f32))
    with TraceContext(g):
        layer(x)
    assert [n.op for n in g.nodes] == ["cast", "gather"]
    assert g.nodes[0].outputs[0].dtype == DType.i32


def test_symbolic_shapes_and_functional_model_with_int_input():
    inp = Input((7,), dtype="int32")
    out = Embedding(50, 6)(inp)
    assert out.shape == (None, 7, 6) and out.dtype == "float32"
    model = Model(inp, GlobalAveragePooling1D()(out))
    idx = RNG.integers(0, 50, size=(5, 7))
    (e,) = model.layers[1].get_weights()
    np.testing.assert_allclose(model.predict(idx, verbose=0), e[idx].mean(axis=1), rtol=1e-6)


def test_config_round_trip_and_keras2_arguments():
    layer = Embedding(12, 5, mask_zero=True, name="cfg_emb")
    cfg = layer.get_config()
    json.dumps(cfg)
    assert cfg["input_dim"] == 12 and cfg["output_dim"] == 5 and cfg["mask_zero"] is True
    assert cfg["embeddings_initializer"]["class_name"] == "RandomUniform"
    assert cfg["embeddings_initializer"]["config"]["minval"] == -0.05
    for k in ("embeddings_regularizer", "embeddings_constraint", "activity_regularizer"):
        assert cfg[k] is None
    assert Embedding.from_config(cfg).get_config() == cfg
    assert deserialize(json.loads(json.dumps(serialize(layer)))).get_config() == cfg
    # Keras 2: input_length is accepted; it gives a Sequential its input shape.
    old = Embedding(30, 4, input_length=9)
    assert old._input_shape_arg == (None, 9)
    assert Embedding.from_config(old.get_config()).get_config() == old.get_config()
    model = Sequential([old, GlobalAveragePooling1D()])
    assert model.output_shape == (None, 4)
    with pytest.raises(ValueError, match="input_dim and output_dim"):
        Embedding(0, 3)


def test_train_step_gradient_accumulates_duplicate_indices():
    """One plain-SGD step (lr=1) gives -grad; compare with the numpy backprop of
    mse(Dense(Flatten(E[idx]))) where repeated indices add their rows' gradients."""
    n, t, vocab, dim = 4, 5, 6, 3
    model = Sequential([Input((t,), dtype="int32"), Embedding(vocab, dim, name="emb"),
                        Flatten(), Dense(1, name="head")])
    model.compile(optimizer=SGD(learning_rate=1.0), loss="mse")
    idx = np.array([[1, 1, 1, 0, 5], [2, 1, 2, 2, 3], [0, 0, 7, 1, 4], [5, 5, 5, 5, 5]],
                   np.int32)                       # duplicates, and 7 is out of range
    y = RNG.standard_normal((n, 1)).astype(np.float32)
    e, k, b = (w.astype(np.float64) for w in model.get_weights())
    model.train_on_batch(idx, y)
    e1 = model.get_weights()[0]

    rows = np.where(((idx >= 0) & (idx < vocab))[..., None], e[np.clip(idx, 0, vocab - 1)], 0)
    pred = rows.reshape(n, -1) @ k + b
    dpred = 2 * (pred - y) / n                       # d mean((pred - y)^2)
    drows = (dpred @ k.T).reshape(n, t, dim)
    de = np.zeros_like(e)
    for i, j in np.ndindex(n, t):
        if 0 <= idx[i, j] < vocab:
            de[idx[i, j]] += drows[i, j]
    np.testing.assert_allclose(e - e1, de, rtol=1e-4, atol=1e-6)
    assert np.abs(de[5]).sum() > 0 and np.all(de[[1, 5]] != 0)


def test_embedding_gap_dense_learns_from_int_data():
    set_random_seed(0)
    rng = np.random.default_rng(3)
    vocab, t = 20, 6
    x = rng.integers(0, vocab, size=(192, t)).astype(np.int32)
    y = (np.isin(x, np.arange(10)).sum(axis=1) > t // 2).astype(np.int64)  # "mostly small"
    model = Sequential([Input((t,), dtype="int32"), Embedding(vocab, 8),
                        GlobalAveragePooling1D(), Dense(2, activation="softmax")])
    model.compile(optimizer=Adam(0.02), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = model.evaluate(x, y, verbose=0)[0]
    hist = model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    end = model.evaluate(x, y, verbose=0)[0]
    assert end < 0.25 * start, (start, end)
    assert hist.history["accuracy"][-1] > 0.9
