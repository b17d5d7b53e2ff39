"""A first model: a small MLP for binary classification, written as in a Keras tutorial.

``build_model()`` is what ``python -m graphc dump-ir examples/seed_mlp.py`` and the golden
tests use; running the file trains it on a synthetic rule (y = x0 + x1 > 1).
"""
import numpy as np

from graphc.layers import Dense
from graphc.models import Sequential
from graphc.utils import set_random_seed


def build_model():
    model = Sequential()
    model.add(Dense(64, activation="relu", input_dim=10))
    model.add(Dense(32, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def make_data(n, rng):
    x = rng.random((n, 10), dtype=np.float32)
    y = (x[:, 0] + x[:, 1] > 1).astype("int64")    # ints 0/1, as tutorials feed them
    return x, y


def main():
    set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(2000, rng)
    x_test, y_test = make_data(500, rng)
    model = build_model()
    model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
