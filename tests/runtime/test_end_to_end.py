"""Whole models trained through ``model.fit`` on the reference target: they learn, the
partial last batch is trained on and compiled once, runs repeat bit for bit, and users'
mistakes give clear errors."""
import importlib.util
import pathlib

import numpy as np
import pytest

import graphc
from graphc.errors import DataError, ShapeError, UnknownNameError
from graphc.layers import Dense
from graphc.models import Sequential
from graphc.utils import set_random_seed, to_categorical

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seed_mlp_learns_the_rule():
    set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((1000, 10), dtype=np.float32)
    y = (x[:, 0] + x[:, 1] > 1).astype("int64")
    model = _example("seed_mlp").build_model()
    history = model.fit(x, y, epochs=30, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.95
    _, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.95


def _loss_halves(model, xs, y, epochs):
    start = model.evaluate(xs, y, verbose=0)
    start = start[0] if isinstance(start, list) else start
    model.fit(xs, y, epochs=epochs, batch_size=16, verbose=0)
    end = model.evaluate(xs, y, verbose=0)
    end = end[0] if isinstance(end, list) else end
    assert end < start / 2, (start, end)


def test_functional_two_input_model_trains():
    set_random_seed(0)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((240, 8)), rng.standard_normal((240, 4))
    y = (np.argmax(np.c_[a[:, :2].sum(1), b[:, :2].sum(1), -a[:, 0]], axis=1)).astype(np.int64)
    model = _example("functional_two_input").build_model()
    _loss_halves(model, [a.astype(np.float32), b.astype(np.float32)], y, epochs=25)


def test_small_cnn_trains():
    set_random_seed(0)
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 96)
    x = rng.random((96, 12, 12, 1), dtype=np.float32) * 0.1
    for i, c in enumerate(labels):          # class c lights up a distinctive patch
        x[i, c: c + 3, (c * 7) % 9: (c * 7) % 9 + 3, 0] += 1.0
    model = _example("small_cnn").build_model()
    _loss_halves(model, x, to_categorical(labels, 10), epochs=12)


def _tiny(seed=0):
    set_random_seed(seed)
    model = Sequential([Dense(4, activation="relu", input_dim=3), Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", ["accuracy"])
    return model


def test_partial_batch_is_trained_and_compiled_once():
    model = _tiny()
    exe = graphc.compile(model, target="reference")
    seen = []
    orig = exe.train_step
    exe.train_step = lambda xs, ys, sws=None: (seen.append(len(xs[0])), orig(xs, ys, sws))[1]
    rng = np.random.default_rng(0)
    exe.fit(rng.random((100, 3)), rng.integers(0, 2, 100), batch_size=32, epochs=3, verbose=0)
    assert seen == [32, 32, 32, 4] * 3
    assert sorted(k[1][0][0][0] for k in exe._steps if k[0] == "train") == [4, 32]
    assert int(model.optimizer.iterations.value) == 12


def test_same_seed_gives_bit_identical_weights():
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 3)), rng.integers(0, 2, 50)
    runs = []
    for _ in range(2):
        model = _tiny(seed=7)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_transposed_input_names_the_layer_and_shapes():
    model = Sequential([Dense(4, input_dim=8), Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError) as err:
        model.fit(np.zeros((8, 100)), np.zeros((100, 1)), verbose=0)
    msg = str(err.value)
    assert "8" in msg and "100" in msg


def test_sample_count_mismatch():
    model = _tiny()
    with pytest.raises(DataError, match="100.*99"):
        model.fit(np.zeros((100, 3)), np.zeros(99), verbose=0)


def test_labels_shaped_for_another_loss():
    model = Sequential([Dense(3, activation="softmax", input_dim=2)])
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ShapeError, match="sparse_categorical_crossentropy"):
        model.fit(np.zeros((10, 2)), np.zeros(10, dtype=np.int64), verbose=0)


@pytest.mark.parametrize("kwargs, valid", [
    ({"optimizer": "adamm", "loss": "mse"}, "adam"),
    ({"optimizer": "adam", "loss": "mean_squared_eror"}, "mean_squared_error"),
])
def test_unknown_names_list_valid_ones(kwargs, valid):
    model = Sequential([Dense(1, input_dim=2)])
    with pytest.raises(UnknownNameError, match=valid):
        model.compile(**kwargs)
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0)


def test_unknown_activation_and_target():
    with pytest.raises(UnknownNameError, match="relu"):
        Dense(3, activation="rellu")
    with pytest.raises(graphc.errors.TargetError, match="reference"):
        graphc.compile(Sequential([Dense(1, input_dim=2)]), target="tpu")


def test_layer_on_incompatible_rank():
    from graphc.layers import Conv2D, Input
    with pytest.raises(ValueError, match="conv2d"):
        Conv2D(4, 3)(Input(shape=(10,)))
