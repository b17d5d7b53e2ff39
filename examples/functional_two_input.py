"""A functional model with two inputs, merged by a small custom layer.

Shows the Keras functional API (``Input``, calling layers on tensors, ``Model(inputs,
outputs)``) and a user-defined ``Layer`` whose ``call`` uses ``graphc.ops`` — the way Keras
users write a merge the built-in layers do not offer.
"""
import numpy as np

from graphc import ops
from graphc.layers import Dense, Input, Layer
from graphc.models import Model
from graphc.utils import set_random_seed


class AddBranches(Layer):
    """Elementwise sum of two tensors of the same shape."""

    def call(self, inputs):
        a, b = inputs
        return ops.add(a, b)


def build_model():
    signal = Input(shape=(8,), name="signal")
    context = Input(shape=(4,), name="context")
    a = Dense(16, activation="relu")(signal)
    b = Dense(16, activation="relu")(context)
    merged = AddBranches()([a, b])
    outputs = Dense(3, activation="softmax")(merged)
    model = Model(inputs=[signal, context], outputs=outputs)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def make_data(n, rng):
    signal = rng.normal(size=(n, 8)).astype("float32")
    context = rng.normal(size=(n, 4)).astype("float32")
    # The class needs both inputs: which of three scores, each mixing the two, is largest.
    scores = np.stack([signal[:, 0] + context[:, 0],
                       signal[:, 1] - context[:, 1],
                       signal[:, 2] + context[:, 2] - signal[:, 3]], axis=1)
    return [signal, context], scores.argmax(axis=1)


def main():
    set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(3000, rng)
    x_test, y_test = make_data(600, rng)
    model = build_model()
    model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
