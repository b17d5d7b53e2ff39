"""Handwritten digit recognition with a small LeNet-style CNN — graphc's main example.

Trains on the 8x8 digits bundled with graphc (``graphc.datasets.digits``), prints Keras-style
progress, then the test accuracy, and exits with status 1 if it is below 0.95. The model code
is plain Keras with the import changed; ``graphc.compile(model, target=...)`` picks the
backend (default: ``GRAPHC_TARGET`` or ``graphc.config.default_target()``).

    python examples/digits_cnn.py [--epochs 15] [--target reference|cpu|cuda]
"""
import argparse
import sys
import time

import graphc
from graphc.datasets import digits
from graphc.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from graphc.models import Sequential
from graphc.utils import set_random_seed

REQUIRED_ACCURACY = 0.95


def build_model():
    model = Sequential()
    model.add(Conv2D(16, 3, padding="same", activation="relu", input_shape=(8, 8, 1)))
    model.add(MaxPooling2D(2))
    model.add(Conv2D(32, 3, padding="same", activation="relu"))
    model.add(MaxPooling2D(2))
    model.add(Flatten())
    model.add(Dense(64, activation="relu"))
    model.add(Dropout(0.2))
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def load_digits():
    """The digits as float32 images in [0, 1] of shape (N, 8, 8, 1) and integer labels."""
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    scale = lambda x: (x.astype("float32") / digits.MAX_PIXEL).reshape(-1, 8, 8, 1)  # noqa: E731
    return (scale(x_train), y_train), (scale(x_test), y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--target", choices=graphc.config.KNOWN_TARGETS, default=None,
                        help="backend (default: %s)" % graphc.config.default_target())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_digits()
    print(f"{len(x_train)} training and {len(x_test)} test images of shape {x_train.shape[1:]}")

    model = build_model()
    target = args.target or graphc.config.default_target()
    print(f"Compiling for target: {target}")
    compiled = graphc.compile(model, target=target)

    start = time.perf_counter()
    compiled.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                 validation_split=0.1, verbose=1)
    seconds = time.perf_counter() - start
    loss, accuracy = compiled.evaluate(x_test, y_test, verbose=0)
    print(f"Trained {args.epochs} epochs in {seconds:.1f} s")
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f}")
    if accuracy < REQUIRED_ACCURACY:
        print(f"FAILED: test accuracy {accuracy:.4f} is below {REQUIRED_ACCURACY}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
