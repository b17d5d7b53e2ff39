"""A small CNN on 12x12 single-channel images, one-hot labels and categorical crossentropy.

Running the file trains it on synthetic images: a bright 3x3 patch whose position (one of
ten places) is the class, on a noisy background.
"""
import numpy as np

from graphc.layers import Conv2D, Dense, Flatten, MaxPooling2D
from graphc.models import Sequential
from graphc.utils import set_random_seed, to_categorical

# Top-left corners of the patch for classes 0..9: two rows of five positions.
PLACES = [(r, c) for r in (1, 7) for c in (0, 2, 4, 6, 8)]


def build_model():
    model = Sequential()
    model.add(Conv2D(8, 3, activation="relu", input_shape=(12, 12, 1)))
    model.add(MaxPooling2D(2))
    model.add(Conv2D(16, 3, padding="same", activation="relu"))
    model.add(Flatten())
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def make_data(n, rng):
    y = rng.integers(0, 10, size=n)
    x = rng.random((n, 12, 12, 1), dtype=np.float32) * 0.3
    for i, label in enumerate(y):
        r, c = PLACES[label]
        x[i, r:r + 3, c:c + 3, 0] += 0.7
    return x, to_categorical(y, 10)


def main():
    set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(2000, rng)
    x_test, y_test = make_data(500, rng)
    model = build_model()
    model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
