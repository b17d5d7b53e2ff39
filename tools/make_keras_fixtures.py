"""Make the real-Keras fixtures of tests/saving/fixtures/ (tiny models saved by Keras).

Keras is not a dependency of graphc: run this in a throwaway virtual environment, once per
Keras generation, and commit the files it writes.

    python3 -m venv /tmp/kerasenv && /tmp/kerasenv/bin/pip install keras jax scipy h5py
    /tmp/kerasenv/bin/python tools/make_keras_fixtures.py keras3

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras h5py
    /tmp/tfenv/bin/python tools/make_keras_fixtures.py keras2

Keras 3 runs on the JAX backend (its numpy backend imports JAX anyway and cannot train):
training a few steps first gives the files real optimizer state. Each Keras 3 model
``NAME`` gets ``NAME.keras`` and ``NAME.weights.h5`` (the MLP also the legacy ``.h5``);
Keras 2 models get ``NAME.h5`` (the MLP also ``NAME_weights.h5`` from Keras 2
``save_weights``). Every model gets ``NAME.npz`` with an input batch
``x*``, Keras' predictions ``pred*``, and — for models without dropout — one more
training step: the batch ``step_x*``/``step_y*`` and the weights after it
(``after_0``, ``after_1``, ...), so a test can check that training resumes exactly.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "saving", "fixtures")


def _as_list(v):
    return v if isinstance(v, (list, tuple)) else [v]


def _save(model, out, name, exts):
    # Each HDF5 file costs ~20-40 KB however small the model: the legacy .h5 is saved for
    # one model only (Keras 3 cannot even reload its own .h5 of a multi-loss functional
    # model, so that one would add nothing).
    for ext in exts:
        path = os.path.join(out, name + ext)
        (model.save_weights if ext == ".weights.h5" else model.save)(path)


def _record(keras, model, out, name, xs, step=None):
    """Predictions for ``xs`` and, when ``step=(xs, ys)``, weights after one more step."""
    arrays = {}
    preds = _as_list(model.predict(xs if len(xs) > 1 else xs[0], verbose=0))
    for i, x in enumerate(xs):
        arrays[f"x{i}"] = x
    for i, p in enumerate(preds):
        arrays[f"pred{i}"] = p
    if step is not None:
        sx, sy = step
        model.train_on_batch(sx if len(sx) > 1 else sx[0], sy if len(sy) > 1 else sy[0])
        for i, x in enumerate(sx):
            arrays[f"step_x{i}"] = x
        for i, y in enumerate(sy):
            arrays[f"step_y{i}"] = y
        for i, w in enumerate(model.get_weights()):
            arrays[f"after_{i}"] = np.asarray(w)
        arrays["iterations_after"] = np.asarray(int(np.asarray(model.optimizer.iterations)))
    arrays["keras_version"] = np.asarray(keras.__version__)
    np.savez_compressed(os.path.join(out, f"{name}.npz"), **arrays)


def keras3(out):
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    # A Dense MLP, trained a few Adam steps (no dropout, so one more step is deterministic).
    mlp = keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu", name="hidden"),
                            layers.Dense(4, activation="tanh"),
                            layers.Dense(3, activation="softmax", name="probs")], name="mlp")
    mlp.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01),
                loss="categorical_crossentropy", metrics=["accuracy"])
    x = rng.normal(size=(32, 6)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, size=32), 3)
    mlp.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    _save(mlp, out, "k3_mlp", (".keras", ".h5", ".weights.h5"))
    _record(keras, mlp, out, "k3_mlp", [x[:5]], step=([x[:8]], [y[:8]]))

    # A small CNN, RMSprop with momentum and centering (slots saved in three groups).
    cnn = keras.Sequential([keras.Input((8, 8, 2)),
                            layers.Conv2D(3, 3, activation="relu", padding="same"),
                            layers.MaxPooling2D(2),
                            layers.Conv2D(4, (2, 2), strides=2, name="conv_b"),
                            layers.Flatten(),
                            layers.Dense(2, activation="softmax")], name="cnn")
    cnn.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.005, momentum=0.9,
                                                   centered=True),
                loss="categorical_crossentropy", metrics=["accuracy"])
    xi = rng.normal(size=(16, 8, 8, 2)).astype("float32")
    yi = keras.utils.to_categorical(rng.integers(0, 2, size=16), 2)
    cnn.fit(xi, yi, epochs=1, batch_size=8, shuffle=False, verbose=0)
    _save(cnn, out, "k3_cnn", (".keras", ".weights.h5"))
    _record(keras, cnn, out, "k3_cnn", [xi[:4]], step=([xi[:8]], [yi[:8]]))

    # Functional: two inputs, two outputs, a nested Sequential, merges, Dropout and a
    # frozen layer (prediction only: dropout makes a training step random).
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="relu", name="d1"),
                              layers.Dense(3, name="d2")], name="inner")
    a = keras.Input((4,), name="a")
    b = keras.Input((5,), name="b")
    ha = inner(a)
    hb = layers.Dense(3, name="proj")(b)
    z = layers.Concatenate()([ha, hb])
    z = layers.Dropout(0.5)(z)
    o1 = layers.Dense(1, name="out1")(z)
    o2 = layers.Dense(2, activation="softmax", name="out2")(layers.Add()([ha, hb]))
    fn = keras.Model([a, b], [o1, o2], name="multi")
    fn.get_layer("proj").trainable = False
    fn.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
               loss=["mse", "categorical_crossentropy"])
    xa = rng.normal(size=(8, 4)).astype("float32")
    xb = rng.normal(size=(8, 5)).astype("float32")
    fn.fit([xa, xb], [rng.normal(size=(8, 1)).astype("float32"),
                      keras.utils.to_categorical(rng.integers(0, 2, size=8), 2)],
           epochs=1, batch_size=4, shuffle=False, verbose=0)
    _save(fn, out, "k3_functional", (".keras", ".weights.h5"))
    _record(keras, fn, out, "k3_functional", [xa[:3], xb[:3]])


def keras2(out):
    import tf_keras as keras
    from tf_keras import layers

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)

    # Sequential the Keras 2 way: input_shape on the first layer (batch_input_shape in the
    # config), trained with Adam (optimizer_weights 'Adam/m/dense/kernel:0', ...).
    mlp = keras.Sequential([layers.Dense(8, activation="relu", input_shape=(6,)),
                            layers.Dense(3, activation="softmax")])
    mlp.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01),
                loss="categorical_crossentropy", metrics=["accuracy"])
    x = rng.normal(size=(32, 6)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, size=32), 3)
    mlp.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    mlp.save(os.path.join(out, "k2_mlp.h5"))
    mlp.save_weights(os.path.join(out, "k2_mlp_weights.h5"))
    _record(keras, mlp, out, "k2_mlp", [x[:5]], step=([x[:8]], [y[:8]]))

    # Functional with list-form inbound nodes, a CNN branch and RMSprop with momentum.
    img = keras.Input((6, 6, 1), name="img")
    vec = keras.Input((3,), name="vec")
    h = layers.Conv2D(2, 3, activation="relu")(img)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Flatten()(h)
    h = layers.Concatenate()([h, vec])
    out_t = layers.Dense(1)(h)
    fn = keras.Model([img, vec], out_t)
    fn.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.9), loss="mse")
    xi = rng.normal(size=(8, 6, 6, 1)).astype("float32")
    xv = rng.normal(size=(8, 3)).astype("float32")
    fn.fit([xi, xv], rng.normal(size=(8, 1)).astype("float32"), epochs=1, batch_size=4,
           shuffle=False, verbose=0)
    fn.save(os.path.join(out, "k2_functional.h5"))
    _record(keras, fn, out, "k2_functional", [xi[:3], xv[:3]],
            step=([xi[:4], xv[:4]], [rng.normal(size=(4, 1)).astype("float32")]))


def main(argv):
    if len(argv) < 2 or argv[1] not in ("keras3", "keras2"):
        print(__doc__)
        return 2
    out = os.path.abspath(argv[2] if len(argv) > 2 else DEFAULT_OUT)
    os.makedirs(out, exist_ok=True)
    (keras3 if argv[1] == "keras3" else keras2)(out)
    print(f"wrote {argv[1]} fixtures to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
