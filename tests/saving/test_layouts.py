"""The files graphc writes, opened with h5py/zipfile and checked against the Keras layouts
of /work/shared/KERAS_FORMATS.md (and against files real Keras wrote: see
test_keras_fixtures.py)."""
from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest

import graphc
from graphc import layers, optimizers
from graphc.saving.common import load_attribute_list, save_attribute_list

from . import MODELS, fit_a_little, mlp, multi_io


def h5_tree(path):
    """{path: shape or None (group)} and {path: name attribute} of an HDF5 file."""
    tree, names = {}, {}

    def visit(name, obj):
        tree[name] = tuple(obj.shape) if isinstance(obj, h5py.Dataset) else None
        if "name" in obj.attrs:
            names[name] = obj.attrs["name"]
    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return tree, names


def test_weights_h5_sequential_layout(tmp_path):
    model, xs, ys = mlp()
    fit_a_little(model, xs, ys)
    model.save_weights(tmp_path / "m.weights.h5")
    tree, names = h5_tree(tmp_path / "m.weights.h5")
    datasets = {k: v for k, v in tree.items() if v is not None}
    expected = {"layers/dense/vars/0": (8, 6), "layers/dense/vars/1": (6,),
                "layers/dense_1/vars/0": (6, 5), "layers/dense_1/vars/1": (5,),
                "layers/dense_2/vars/0": (5, 3), "layers/dense_2/vars/1": (3,)}
    n_opt = 2 + 2 * 6          # iteration, learning_rate, (momentum, velocity) per weight
    expected.update({f"optimizer/vars/{i}": None for i in range(n_opt)})
    assert set(datasets) == set(expected)
    for k, shape in expected.items():
        if shape is not None:
            assert datasets[k] == shape, k
    # Classes, not layer names, address the groups; the name is an attribute.
    assert names["layers/dense/vars"] == "hidden"
    assert names["layers/dense_2/vars"] == "probs"
    assert names["vars"] == "mlp"
    assert names["optimizer/vars"] == "adam"
    assert "layers/dropout/vars" in tree            # a layer without weights: empty group
    assert "layers/input_layer" not in tree         # Sequential: no InputLayer entry
    with h5py.File(tmp_path / "m.weights.h5") as f:
        assert len(f["vars"]) == 0
        np.testing.assert_array_equal(f["layers/dense/vars/0"][()],
                                      model.get_layer("hidden").kernel.value)
        assert int(f["optimizer/vars/0"][()]) == 2
        assert f["optimizer/vars/0"].dtype.kind == "i"
        assert float(f["optimizer/vars/1"][()]) == pytest.approx(0.001)
        opt = model.optimizer
        k = model.get_layer("hidden").kernel
        b = model.get_layer("hidden").bias
        # Adam: momentum and velocity interleaved per trained variable, in order.
        np.testing.assert_array_equal(f["optimizer/vars/2"][()], opt.slot(k, "momentum").value)
        np.testing.assert_array_equal(f["optimizer/vars/3"][()], opt.slot(k, "velocity").value)
        np.testing.assert_array_equal(f["optimizer/vars/4"][()], opt.slot(b, "momentum").value)


def test_weights_h5_functional_and_nested_layout(tmp_path):
    model, xs, ys = MODELS["nested"]()
    model.save_weights(tmp_path / "n.weights.h5")
    tree, names = h5_tree(tmp_path / "n.weights.h5")
    # outer: [top_in, middle, concatenate, top_head]; middle: [x_in, inner_seq, mid_head]
    assert names["layers/input_layer/vars"] == "top_in"
    assert names["layers/functional/vars"] == "middle"
    assert names["layers/functional/layers/input_layer/vars"] == "x_in"
    assert names["layers/functional/layers/sequential/vars"] == "inner_seq"
    assert tree["layers/functional/layers/sequential/layers/dense/vars/0"] == (4, 3)
    assert tree["layers/functional/layers/sequential/layers/dense_1/vars/1"] == (3,)
    assert names["layers/functional/layers/dense/vars"] == "mid_head"
    assert tree["layers/functional/layers/dense/vars/0"] == (3, 2)
    assert names["layers/dense/vars"] == "top_head"
    assert tree["layers/dense/vars/0"] == (6, 1)
    assert "layers/concatenate/vars" in tree
    # Adam with amsgrad: (momentum, velocity) per variable, then all velocity_hat.
    n_w = len(model.trainable_weights)
    assert tree[f"optimizer/vars/{2 + 3 * n_w - 1}"] == (1,)
    assert f"optimizer/vars/{2 + 3 * n_w}" not in tree
    with h5py.File(tmp_path / "n.weights.h5") as f:
        opt = model.optimizer
        first = model.trainable_weights[0]
        np.testing.assert_array_equal(f[f"optimizer/vars/{2 + 2 * n_w}"][()],
                                      opt.slot(first, "velocity_hat").value)


def test_weights_h5_non_trainable_after_trainable_and_rmsprop_groups(tmp_path):
    model, xs, ys = MODELS["cnn"]()
    fit_a_little(model, xs, ys)
    model.save_weights(tmp_path / "c.weights.h5")
    tree, names = h5_tree(tmp_path / "c.weights.h5")
    bn = model.get_layer(names["layers/batch_normalization/vars"])
    assert isinstance(bn, layers.BatchNormalization)
    with h5py.File(tmp_path / "c.weights.h5") as f:
        g = f["layers/batch_normalization/vars"]
        for i, var in enumerate(bn.weights):
            np.testing.assert_array_equal(g[str(i)][()], var.value)
        assert [bn.weights[i].trainable for i in range(4)] == [True, True, False, False]
        assert tree["layers/conv2d/vars/0"] == (3, 3, 2, 3)
        assert names["layers/conv2d_1/vars"] == "conv_b"
        assert "layers/max_pooling2d/vars" in tree
        assert "layers/average_pooling2d/vars" in tree
        # RMSprop(momentum, centered): all velocities, then all momentums, then all
        # average gradients.
        opt = model.optimizer
        trained = opt.trainable_variables
        n = len(trained)
        for group, slot in enumerate(("velocity", "momentum", "average_gradient")):
            for j, var in enumerate(trained):
                np.testing.assert_array_equal(f[f"optimizer/vars/{2 + group * n + j}"][()],
                                              opt.slot(var, slot).value)


def test_keras_archive_members_and_json(tmp_path):
    model, _, _ = mlp()
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["metadata.json", "config.json",
                                               "model.weights.h5"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        meta = json.loads(zf.read("metadata.json"))
        cfg = json.loads(zf.read("config.json"))
        weights = zf.read("model.weights.h5")
    assert set(meta) >= {"keras_version", "date_saved"}
    assert meta["keras_version"].startswith("3.")
    assert weights[:8] == b"\x89HDF\r\n\x1a\n"
    assert cfg["module"] == "keras" and cfg["class_name"] == "Sequential"
    assert {"module", "class_name", "config", "registered_name", "compile_config"} <= set(cfg)
    layers_cfg = cfg["config"]["layers"]
    assert layers_cfg[0]["class_name"] == "InputLayer"
    assert layers_cfg[0]["config"]["batch_shape"] == [None, 8]
    assert layers_cfg[1]["class_name"] == "Dense"
    assert layers_cfg[1]["build_config"] == {"input_shape": [None, 8]}
    assert cfg["config"]["build_input_shape"] == [None, 8]
    assert cfg["compile_config"]["optimizer"]["module"] == "keras.optimizers"


def test_keras_archive_functional_config(tmp_path):
    model, _, _ = multi_io()
    model.save(tmp_path / "f.keras")
    with zipfile.ZipFile(tmp_path / "f.keras") as zf:
        cfg = json.loads(zf.read("config.json"))
    assert cfg["module"] == "keras.src.models.functional"
    assert cfg["registered_name"] == "Functional"
    c = cfg["config"]
    assert c["input_layers"] == [["a", 0, 0], ["b", 0, 0]]
    assert c["output_layers"] == [["out1", 0, 0], ["out2", 0, 0]]
    by_name = {l["name"]: l for l in c["layers"]}
    concat = next(l for l in model.layers if isinstance(l, layers.Concatenate))
    node = by_name[concat.name]["inbound_nodes"][0]
    tensors = node["args"][0]
    assert [t["class_name"] for t in tensors] == ["__keras_tensor__"] * 2
    assert [t["config"]["keras_history"] for t in tensors] == [["da", 0, 0], ["db", 0, 0]]


def test_legacy_h5_full_model_layout(tmp_path):
    model, xs, ys = multi_io()
    fit_a_little(model, xs, ys)
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        for key in ("keras_version", "backend", "model_config", "training_config"):
            assert key in f.attrs
        mc = json.loads(f.attrs["model_config"])
        assert mc["class_name"] == "Functional" and "module" not in mc
        first = mc["config"]["layers"][0]
        assert set(first) == {"class_name", "config", "name", "inbound_nodes"}
        assert first["config"]["batch_input_shape"] == [None, 4]
        tc = json.loads(f.attrs["training_config"])
        assert tc["optimizer_config"]["class_name"] == "SGD"
        assert tc["loss"] == ["mse", "categorical_crossentropy"]
        mw = f["model_weights"]
        assert load_attribute_list(mw, "layer_names") == [l.name for l in model.layers]
        assert "backend" in mw.attrs and "keras_version" in mw.attrs
        assert load_attribute_list(mw["out1"], "weight_names") == ["out1/kernel", "out1/bias"]
        np.testing.assert_array_equal(mw["out1"]["out1/kernel"][()],
                                      model.get_layer("out1").kernel.value)
        assert load_attribute_list(mw["a"], "weight_names") == []
        assert "top_level_model_weights" in mw
        ow = f["optimizer_weights"]
        names = load_attribute_list(ow, "weight_names")
        assert names[:2] == ["SGD/iteration", "SGD/learning_rate"]
        assert len(names) == 2 + len(model.trainable_weights)
        assert int(ow[names[0]][()]) == 2


def test_legacy_h5_nested_weight_names(tmp_path):
    model, _, _ = MODELS["nested"]()
    model.save(tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5") as f:
        names = load_attribute_list(f["model_weights/middle"], "weight_names")
        # Keras 3 style: the nested model's name, then the sublayer path.
        assert names[0].startswith("middle/") and names[0].endswith("/kernel")
        assert len(names) == 6


def test_keras2_save_weights_layout(tmp_path):
    model, _, _ = mlp()
    model.save_weights(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5") as f:
        assert "model_config" not in f.attrs and "model_weights" not in f
        assert load_attribute_list(f, "layer_names") == [l.name for l in model.layers]
        assert len(model.layers) == 4
        assert load_attribute_list(f["hidden"], "weight_names") == ["hidden/kernel",
                                                                    "hidden/bias"]
        assert "optimizer_weights" not in f


def test_frozen_layer_legacy_weight_order(tmp_path):
    bn = layers.BatchNormalization(name="bn")
    model = graphc.Sequential([layers.Input((3,)), bn])
    bn.trainable = False
    model.save_weights(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5") as f:
        assert load_attribute_list(f["bn"], "weight_names") == [
            "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"]


def test_long_attribute_lists_are_chunked(tmp_path):
    names = [f"layer_with_a_rather_long_name_{i:05d}" for i in range(3000)]
    with h5py.File(tmp_path / "a.h5", "w") as f:
        save_attribute_list(f, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names0" in f.attrs
        assert "layer_names1" in f.attrs
        assert load_attribute_list(f, "layer_names") == names
        save_attribute_list(f, "short", ["a", "b"])
        assert load_attribute_list(f, "short") == ["a", "b"]


def test_many_layers_model_round_trips_through_chunked_names(tmp_path):
    inp = layers.Input((2,))
    x = inp
    for i in range(40):
        x = layers.Dense(2, name=f"a_quite_long_layer_name_for_chunking_{i:04d}" + "x" * 1600)(x)
    model = graphc.Model(inp, x)
    model.save(tmp_path / "big.h5")
    with h5py.File(tmp_path / "big.h5") as f:
        assert "layer_names0" in f["model_weights"].attrs
    loaded = graphc.models.load_model(tmp_path / "big.h5")
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_unknown_extension_weights_use_keras3_layout(tmp_path):
    model, _, _ = mlp()
    model.save_weights(tmp_path / "ckpt-01")
    tree, _ = h5_tree(tmp_path / "ckpt-01")
    assert "layers/dense/vars/0" in tree


def test_shared_layer_saved_once(tmp_path):
    shared = layers.Dense(3, name="shared")
    a, b = layers.Input((3,), name="a"), layers.Input((3,), name="b")
    model = graphc.Model([a, b], layers.Add()([shared(a), shared(b)]))
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    model.save_weights(tmp_path / "s.weights.h5")
    tree, names = h5_tree(tmp_path / "s.weights.h5")
    assert [k for k, v in names.items() if v == "shared"] == ["layers/dense/vars"]
    fresh_shared = layers.Dense(3, name="shared")
    a2, b2 = layers.Input((3,), name="a"), layers.Input((3,), name="b")
    fresh = graphc.Model([a2, b2], layers.Add()([fresh_shared(a2), fresh_shared(b2)]))
    fresh.load_weights(tmp_path / "s.weights.h5")
    np.testing.assert_array_equal(fresh_shared.kernel.value, shared.kernel.value)
