"""Save/load round trips: every model kind through ``.keras`` and ``.h5`` and every weights
layout; after loading, weights and predictions are identical, the compile config and the
optimizer state are restored, and one more training step matches the original model's."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import graphc
from graphc import layers, optimizers
from graphc.models import load_model
from graphc.saving import (UnknownObjectError, load_weights, register_keras_serializable,
                           save_model)
from graphc.saving.model_config import compile_config_for_saving

from . import (MODELS, assert_same_arrays, fit_a_little, mlp, multi_io, optimizer_state,
               predict, train_step_both)


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_model_round_trip(tmp_path, kind, ext):
    model, xs, ys = MODELS[kind]()
    fit_a_little(model, xs, ys)
    path = tmp_path / f"model{ext}"
    model.save(path)
    loaded = load_model(path)

    assert type(loaded) is type(model)
    assert loaded.name == model.name
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [l.trainable for l in loaded.layers] == [l.trainable for l in model.layers]
    assert [v.trainable for v in loaded.weights] == [v.trainable for v in model.weights]
    assert_same_arrays(loaded.get_weights(), model.get_weights())
    assert_same_arrays(predict(loaded, xs), predict(model, xs))

    assert loaded.compiled
    assert compile_config_for_saving(loaded) == compile_config_for_saving(model)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert int(loaded.optimizer.iterations) == 2
    assert_same_arrays(optimizer_state(loaded), optimizer_state(model))

    # Training resumes exactly where it stopped (same dropout seed on both sides).
    w_orig, w_loaded = train_step_both(model, loaded, xs, ys)
    assert_same_arrays(w_loaded, w_orig)
    assert_same_arrays(optimizer_state(loaded), optimizer_state(model))


@pytest.mark.parametrize("name", ["w.weights.h5", "w.h5", "w.hdf5", "weights_checkpoint"])
def test_weights_round_trip_into_fresh_model(tmp_path, name):
    # (No Dropout: a fresh model's Dropout gets another auto name, hence another mask.)
    model, xs, ys = MODELS["nested"]()
    fit_a_little(model, xs, ys)
    path = tmp_path / name
    model.save_weights(path)
    fresh, _, _ = MODELS["nested"]()
    assert not np.array_equal(fresh.get_weights()[0], model.get_weights()[0])
    fresh.load_weights(path)
    assert_same_arrays(fresh.get_weights(), model.get_weights())
    assert_same_arrays(predict(fresh, xs), predict(model, xs))
    keras3_layout = not name.endswith((".h5", ".hdf5")) or name.endswith(".weights.h5")
    if keras3_layout:   # the Keras 3 layout carries the optimizer state too
        assert_same_arrays(optimizer_state(fresh), optimizer_state(model))
        w1, w2 = train_step_both(model, fresh, xs, ys)
        assert_same_arrays(w2, w1)
    else:
        assert int(fresh.optimizer.iterations) == 0


def test_weights_from_full_model_files(tmp_path):
    model, xs, ys = mlp()
    fit_a_little(model, xs, ys)
    for ext in (".keras", ".h5"):
        model.save(tmp_path / f"m{ext}")
        fresh, _, _ = mlp()
        fresh.load_weights(tmp_path / f"m{ext}")
        assert_same_arrays(fresh.get_weights(), model.get_weights())


def test_frozen_flags_survive_weights_only_round_trip(tmp_path):
    model, xs, ys = MODELS["frozen"]()
    fit_a_little(model, xs, ys)
    model.save_weights(tmp_path / "t.weights.h5")
    fresh, _, _ = MODELS["frozen"]()
    fresh.load_weights(tmp_path / "t.weights.h5")
    assert [l.trainable for l in fresh.layers] == [l.trainable for l in model.layers]
    assert_same_arrays(fresh.get_weights(), model.get_weights())


def test_uncompiled_and_include_optimizer_false(tmp_path):
    model, xs, _ = mlp()
    plain = graphc.Sequential([layers.Input((3,)), layers.Dense(2)], name="plain")
    for ext in (".keras", ".h5"):
        plain.save(tmp_path / f"plain{ext}")
        loaded = load_model(tmp_path / f"plain{ext}")
        assert not loaded.compiled
        assert_same_arrays(loaded.get_weights(), plain.get_weights())

        model.save(tmp_path / f"noopt{ext}", include_optimizer=False)
        loaded = load_model(tmp_path / f"noopt{ext}")
        assert not loaded.compiled
        assert_same_arrays(predict(loaded, xs), predict(model, xs))

        model.save(tmp_path / f"full{ext}")
        loaded = load_model(tmp_path / f"full{ext}", compile=False)
        assert not loaded.compiled and loaded.optimizer is None
        assert_same_arrays(loaded.get_weights(), model.get_weights())


def test_optimizer_hyperparameters_and_changed_learning_rate(tmp_path):
    opt = optimizers.Adam(learning_rate=0.02, beta_1=0.8, amsgrad=True)
    model, xs, ys = mlp(optimizer=opt)
    fit_a_little(model, xs, ys)
    model.optimizer.learning_rate = 0.005          # e.g. set by ReduceLROnPlateau
    for ext in (".keras", ".h5"):
        model.save(tmp_path / f"m{ext}")
        loaded = load_model(tmp_path / f"m{ext}")
        assert loaded.optimizer.beta_1 == pytest.approx(0.8)
        assert loaded.optimizer.amsgrad is True
        assert float(loaded.optimizer.learning_rate) == pytest.approx(0.005)
        assert_same_arrays(optimizer_state(loaded), optimizer_state(model))


@pytest.mark.parametrize("opt", [optimizers.SGD(0.1), optimizers.Adadelta(1.0),
                                 optimizers.AdamW(0.01), optimizers.RMSprop(0.01)],
                         ids=lambda o: type(o).__name__)
def test_every_optimizer_resumes(tmp_path, opt):
    model, xs, ys = mlp(optimizer=opt, dropout=False)
    fit_a_little(model, xs, ys)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert_same_arrays(optimizer_state(loaded), optimizer_state(model))
    w1, w2 = train_step_both(model, loaded, xs, ys)
    assert_same_arrays(w2, w1)


def test_never_trained_model_resumes_like_a_fresh_one(tmp_path):
    model, xs, ys = mlp(dropout=False)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert int(loaded.optimizer.iterations) == 0
    w1, w2 = train_step_both(model, loaded, xs, ys)
    assert_same_arrays(w2, w1)


def test_format_rules(tmp_path):
    model, xs, _ = mlp()
    model.save(tmp_path / "no_extension")               # Keras 2 style name
    assert zipfile.is_zipfile(tmp_path / "no_extension")
    model.save(tmp_path / "forced.bin", save_format="h5")
    assert (tmp_path / "forced.bin").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    model.save(tmp_path / "forced.h5", save_format="keras")
    assert zipfile.is_zipfile(tmp_path / "forced.h5")
    for name in ("no_extension", "forced.bin", "forced.h5"):
        assert_same_arrays(predict(load_model(tmp_path / name), xs), predict(model, xs))
    with pytest.raises(graphc.errors.GraphcError, match="SavedModel"):
        model.save(tmp_path / "x", save_format="tf")


def test_file_object_round_trip():
    model, xs, _ = mlp()
    buf = io.BytesIO()
    save_model(model, buf)
    buf.seek(0)
    loaded = load_model(buf)
    assert_same_arrays(predict(loaded, xs), predict(model, xs))


def test_save_weights_then_load_by_name(tmp_path):
    a = layers.Input((4,), name="a")
    m1 = graphc.Model(a, layers.Dense(2, name="second")(layers.Dense(3, name="first")(a)))
    m1.save_weights(tmp_path / "w.h5")
    # Another model that shares only the layer "first" (and has it in another position).
    b = layers.Input((4,), name="b")
    h = layers.Dense(3, name="first")(b)
    m2 = graphc.Model(b, layers.Dense(7, name="other")(h))
    before_other = m2.get_layer("other").get_weights()
    m2.load_weights(tmp_path / "w.h5", by_name=True)
    assert_same_arrays(m2.get_layer("first").get_weights(), m1.get_layer("first").get_weights())
    assert_same_arrays(m2.get_layer("other").get_weights(), before_other)


def test_skip_mismatch_loads_what_fits(tmp_path):
    model, _, _ = mlp(dropout=False)
    model.save_weights(tmp_path / "w.weights.h5")
    other = graphc.Sequential([layers.Input((8,)), layers.Dense(6, activation="relu"),
                               layers.Dense(4, activation="tanh"), layers.Dense(3)])
    before = [other.layers[i].get_weights() for i in (1, 2)]
    with pytest.warns(UserWarning, match="skip_mismatch"):
        load_weights(other, tmp_path / "w.weights.h5", skip_mismatch=True)
    assert_same_arrays(other.layers[0].get_weights(), model.layers[0].get_weights())
    # 5 vs 4 units: both layers that touch them keep their weights.
    assert_same_arrays(other.layers[1].get_weights(), before[0])
    assert_same_arrays(other.layers[2].get_weights(), before[1])


def my_scaled_mse(y_true, y_pred):
    from graphc import ops
    return ops.mean(ops.square(ops.subtract(y_true, y_pred)), axis=-1)


def test_custom_loss_needs_custom_objects(tmp_path):
    model = graphc.Sequential([layers.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss=my_scaled_mse)
    model.save(tmp_path / "m.keras")
    with pytest.raises(UnknownObjectError, match="custom_objects") as e:
        load_model(tmp_path / "m.keras")
    assert isinstance(e.value, ValueError)
    loaded = load_model(tmp_path / "m.keras", custom_objects={"my_scaled_mse": my_scaled_mse})
    assert loaded.compiled
    assert load_model(tmp_path / "m.keras", compile=False).compiled is False
    with graphc.saving.custom_object_scope({"my_scaled_mse": my_scaled_mse}):
        assert load_model(tmp_path / "m.keras").compiled


def test_registered_custom_objects(tmp_path):
    @register_keras_serializable(package="tests")
    def registered_loss(y_true, y_pred):
        return my_scaled_mse(y_true, y_pred)

    model = graphc.Sequential([layers.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss=registered_loss)
    model.save(tmp_path / "m.h5")
    assert load_model(tmp_path / "m.h5").compiled


def test_custom_layer_round_trip(tmp_path):
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, **kw):
            super().__init__(**kw)
            self.factor = factor

        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            from graphc import ops
            return ops.multiply(ops.multiply(x, self.w), self.factor)

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    inp = layers.Input((3,))
    model = graphc.Model(inp, layers.Dense(2)(Scale(3.0, name="scale")(inp)))
    model.get_layer("scale").set_weights([np.array([1.0, 2.0, 3.0], np.float32)])
    x = np.ones((2, 3), np.float32)
    for ext in (".keras", ".h5"):
        model.save(tmp_path / f"c{ext}")
        loaded = load_model(tmp_path / f"c{ext}", custom_objects={"Scale": Scale})
        assert loaded.get_layer("scale").factor == 3.0
        assert_same_arrays(predict(loaded, [x]), predict(model, [x]))


def test_keras_file_config_is_json_with_compile_config(tmp_path):
    model, _, _ = multi_io()
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        cfg = json.loads(zf.read("config.json"))
    cc = cfg["compile_config"]
    assert cc["optimizer"]["class_name"] == "SGD"
    assert cc["optimizer"]["config"]["nesterov"] is True
    assert cc["loss"] == ["mse", "categorical_crossentropy"]
    assert cc["loss_weights"] == [0.5, 1.0]
    assert cc["metrics"] == [["mae"], ["accuracy"]]


def test_keras3_layout_by_name(tmp_path):
    a = layers.Input((4,), name="a")
    m1 = graphc.Model(a, layers.Dense(2, name="second")(layers.Dense(3, name="first")(a)))
    m1.save_weights(tmp_path / "w.weights.h5")
    b = layers.Input((4,), name="b")
    m2 = graphc.Model(b, layers.Dense(7, name="other")(layers.Dense(3, name="first")(b)))
    m2.load_weights(tmp_path / "w.weights.h5", by_name=True)
    assert_same_arrays(m2.get_layer("first").get_weights(), m1.get_layer("first").get_weights())
    m3 = graphc.Model(b, layers.Dense(7, name="unrelated")(b))
    with pytest.warns(UserWarning, match="Nothing was loaded"):
        m3.load_weights(tmp_path / "w.weights.h5", by_name=True)


def _gan():
    gen = graphc.Sequential([layers.Input((2,)), layers.Dense(4, activation="relu"),
                             layers.Dense(3)], name="gen")
    disc = graphc.Sequential([layers.Input((3,)), layers.Dense(4, activation="relu"),
                              layers.Dense(1, activation="sigmoid")], name="disc")
    disc.compile(optimizer="adam", loss="binary_crossentropy")
    disc.trainable = False                      # frozen inside the combined model
    z = layers.Input((2,), name="z")
    gan = graphc.Model(z, disc(gen(z)), name="gan")
    gan.compile(optimizer="adam", loss="binary_crossentropy")
    return gen, disc, gan


def test_gan_weights_and_both_optimizers(tmp_path):
    gen, disc, gan = _gan()
    ones = np.ones((6, 1), np.float32)
    graphc.compile(disc, target="reference").train_on_batch(np.ones((6, 3), np.float32), ones)
    graphc.compile(gan, target="reference").train_on_batch(np.ones((6, 2), np.float32), ones)
    gan.save_weights(tmp_path / "gan.weights.h5")
    gen2, disc2, gan2 = _gan()
    gan2.load_weights(tmp_path / "gan.weights.h5")
    assert_same_arrays(gan2.get_weights(), gan.get_weights())
    assert_same_arrays(optimizer_state(gan2), optimizer_state(gan))
    assert_same_arrays(optimizer_state(disc2), optimizer_state(disc))   # nested, compiled
    loaded = load_model(_save(gan, tmp_path / "gan.keras"))
    assert [l.trainable for l in loaded.layers] == [True, True, False]
    assert_same_arrays(loaded.get_weights(), gan.get_weights())


def _save(model, path):
    model.save(path)
    return path


def test_subclassed_model_weights(tmp_path):
    class Sub(graphc.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.d1 = layers.Dense(3)
            self.blocks = [layers.Dense(3), layers.Dense(2)]

        def call(self, x):
            x = self.d1(x)
            for blk in self.blocks:
                x = blk(x)
            return x

    sub = Sub()
    sub.build((None, 4))
    for name in ("s.weights.h5", "s.h5"):
        sub.save_weights(tmp_path / name)
        other = Sub()
        other.build((None, 4))
        other.load_weights(tmp_path / name)
        assert_same_arrays(other.get_weights(), sub.get_weights())


def test_unbuilt_model_round_trip(tmp_path):
    model = graphc.Sequential([layers.Dense(3), layers.Dense(2)], name="later")
    model.compile(optimizer="adam", loss="mse")
    for ext in (".keras", ".h5"):
        loaded = load_model(_save(model, tmp_path / f"u{ext}"))
        assert not loaded.built and loaded.compiled and loaded.name == "later"


def _chain(names):
    return graphc.Sequential([layers.Input((3,))] + [layers.Dense(3, name=n) for n in names])


def test_keras3_layout_pairs_by_recorded_names_when_order_differs(tmp_path):
    import h5py
    model = _chain(["p", "q"])
    model.save_weights(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "w.weights.h5", "a") as f:     # the file lists q first
        f.move("layers/dense", "layers/tmp")
        f.move("layers/dense_1", "layers/dense")
        f.move("layers/tmp", "layers/dense_1")
    same_names = _chain(["p", "q"])
    same_names.load_weights(tmp_path / "w.weights.h5")
    assert_same_arrays(same_names.get_weights(), model.get_weights())
    other_names = _chain(["a", "b"])           # no names in common: by place, as Keras
    other_names.load_weights(tmp_path / "w.weights.h5")
    assert_same_arrays(other_names.layers[0].get_weights(), model.layers[1].get_weights())


def test_legacy_layout_pairs_by_name_when_order_differs(tmp_path):
    import h5py

    from graphc.saving.common import save_attribute_list
    model = _chain(["p", "q"])
    model.save_weights(tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "a") as f:
        save_attribute_list(f, "layer_names", ["q", "p"])
    same_names = _chain(["p", "q"])
    same_names.load_weights(tmp_path / "w.h5")
    assert_same_arrays(same_names.get_weights(), model.get_weights())
    other_names = _chain(["a", "b"])
    other_names.load_weights(tmp_path / "w.h5")
    assert_same_arrays(other_names.layers[0].get_weights(), model.layers[1].get_weights())


def test_model_checkpoint_files_load_back(tmp_path):
    from graphc.callbacks import ModelCheckpoint
    model, xs, ys = mlp(dropout=False)
    ckpts = [ModelCheckpoint(str(tmp_path / "full-{epoch:02d}.keras")),
             ModelCheckpoint(str(tmp_path / "w-{epoch:02d}.weights.h5"), save_weights_only=True),
             ModelCheckpoint(str(tmp_path / "legacy-{epoch:02d}.h5"))]
    model.fit(xs[0], ys[0], epochs=2, batch_size=6, verbose=0, callbacks=ckpts)
    loaded = load_model(tmp_path / "full-02.keras")
    assert_same_arrays(loaded.get_weights(), model.get_weights())
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 4
    assert_same_arrays(load_model(tmp_path / "legacy-02.h5").get_weights(), model.get_weights())
    fresh, _, _ = mlp(dropout=False)
    fresh.load_weights(tmp_path / "w-02.weights.h5")
    assert_same_arrays(fresh.get_weights(), model.get_weights())
