"""Files written by real Keras (tests/saving/fixtures/, made by tools/make_keras_fixtures.py
with Keras 3.15.1 on JAX and tf-keras 2.21.0): graphc loads them, predicts what Keras
predicted, resumes training exactly as Keras did, and writes the same layouts back."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import graphc
from graphc import layers
from graphc.models import load_model

from . import FIXTURES, one, predict

TOL = 1e-5


def data(name):
    with np.load(FIXTURES / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def series(d, prefix):
    out, i = [], 0
    while f"{prefix}{i}" in d:
        out.append(d[f"{prefix}{i}"])
        i += 1
    return out


def assert_close(actual, expected, tol=TOL):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert np.shape(a) == np.shape(e)
        np.testing.assert_allclose(a, e, atol=tol, rtol=0)


CASES = [("k3_mlp", "k3_mlp.keras"), ("k3_mlp", "k3_mlp.h5"), ("k3_cnn", "k3_cnn.keras"),
         ("k3_functional", "k3_functional.keras"), ("k2_mlp", "k2_mlp.h5"),
         ("k2_functional", "k2_functional.h5")]


@pytest.mark.parametrize("name,filename", CASES, ids=[c[1] for c in CASES])
def test_load_real_keras_model(name, filename):
    d = data(name)
    model = load_model(FIXTURES / filename)
    assert_close(predict(model, series(d, "x")), series(d, "pred"))
    assert model.compiled and int(model.optimizer.iterations) > 0
    if "step_x0" in d:
        # One more step from the restored optimizer state lands where Keras landed.
        exe = graphc.compile(model, target="reference")
        exe.train_on_batch(one(series(d, "step_x")), one(series(d, "step_y")))
        assert int(model.optimizer.iterations) == int(d["iterations_after"])
        assert_close(model.get_weights(), series(d, "after_"))


def test_real_keras_configs_restore_structure():
    fn = load_model(FIXTURES / "k3_functional.keras")
    assert fn.name == "multi"
    assert fn.input_names == ["a", "b"] and fn.output_names == ["out1", "out2"]
    assert fn.get_layer("proj").trainable is False
    assert fn.get_layer("inner").get_layer("d1").units == 3
    assert type(fn.optimizer).__name__ == "SGD" and fn.optimizer.momentum == pytest.approx(0.9)
    cnn = load_model(FIXTURES / "k3_cnn.keras")
    assert cnn.optimizer.centered is True and cnn.optimizer.momentum == pytest.approx(0.9)
    k2 = load_model(FIXTURES / "k2_functional.h5", compile=False)
    assert not k2.compiled and [t.shape for t in k2.inputs] == [(None, 6, 6, 1), (None, 3)]


def _mlp3():
    return graphc.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                              layers.Dense(4, activation="tanh"),
                              layers.Dense(3, activation="softmax")])


def test_load_weights_from_real_keras3_weights_file():
    d = data("k3_mlp")
    model = _mlp3()
    model.compile(optimizer=graphc.optimizers.Adam(0.01), loss="categorical_crossentropy")
    model.load_weights(FIXTURES / "k3_mlp.weights.h5")
    assert_close(predict(model, series(d, "x")), series(d, "pred"))
    exe = graphc.compile(model, target="reference")        # optimizer state came along
    exe.train_on_batch(d["step_x0"], d["step_y0"])
    assert_close(model.get_weights(), series(d, "after_"))


def test_load_weights_from_real_keras2_save_weights_file():
    d = data("k2_mlp")
    model = graphc.Sequential([layers.Dense(8, activation="relu", input_shape=(6,)),
                               layers.Dense(3, activation="softmax")])
    model.load_weights(FIXTURES / "k2_mlp_weights.h5")
    assert_close(predict(model, series(d, "x")), series(d, "pred"))
    # The full-model file holds the same weights under model_weights/.
    other = graphc.Sequential([layers.Dense(8, activation="relu", input_shape=(6,)),
                               layers.Dense(3, activation="softmax")])
    other.load_weights(FIXTURES / "k2_mlp.h5")
    assert_close(other.get_weights(), model.get_weights(), tol=0)


def _layout(path):
    """(path, shape) of every dataset and the ``name`` of every vars group."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = tuple(obj.shape)
            elif "name" in obj.attrs:
                out[name] = obj.attrs["name"]
        f.visititems(visit)
    return out


@pytest.mark.parametrize("name", ["k3_mlp", "k3_cnn", "k3_functional"])
def test_graphc_writes_the_layout_keras_wrote(tmp_path, name):
    model = load_model(FIXTURES / f"{name}.keras")
    model.save_weights(tmp_path / "again.weights.h5")
    ours, theirs = _layout(tmp_path / "again.weights.h5"), _layout(FIXTURES / f"{name}.weights.h5")
    assert ours == theirs
    # ...and it reads back by the same rules, in graphc and into the Keras-built file's model.
    fresh = load_model(FIXTURES / f"{name}.keras")
    fresh.load_weights(tmp_path / "again.weights.h5")
    assert_close(fresh.get_weights(), model.get_weights(), tol=0)


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_resave_real_keras_model(tmp_path, ext):
    d = data("k2_functional")
    model = load_model(FIXTURES / "k2_functional.h5")
    model.save(tmp_path / f"again{ext}")
    again = load_model(tmp_path / f"again{ext}")
    assert_close(predict(again, series(d, "x")), series(d, "pred"))
    assert int(again.optimizer.iterations) == int(model.optimizer.iterations)


def test_legacy_h5_layer_names_match_keras():
    model = load_model(FIXTURES / "k3_mlp.h5")
    with h5py.File(FIXTURES / "k3_mlp.h5") as f:
        from graphc.saving.common import load_attribute_list
        assert load_attribute_list(f["model_weights"], "layer_names") == \
            [l.name for l in model.layers]
