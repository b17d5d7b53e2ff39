"""A VGG-style CNN with BatchNormalization on the bundled 8x8 digits.

Two VGG blocks — Conv-BN-ReLU, Conv-BN-ReLU, MaxPooling — then a Dense head, as the Keras
tutorials write it: convolutions without bias (BatchNormalization's beta takes its place)
and the activation as its own layer after the normalization. 8x8 images allow two 2x2
poolings (8 -> 4 -> 2). Training updates BatchNormalization's moving statistics and
``evaluate`` normalizes with them. ``momentum=0.9`` rather than Keras' 0.99: an epoch here
is 45 steps, and at 0.99 the moving statistics still hold a quarter of their initial 0/1
after three epochs (0.99**135), so a short run would evaluate with half-learned statistics.
Prints the test accuracy; exits with status 1 if it is below 0.9.

    python examples/vgg_bn_cnn.py [--epochs 10] [--target reference|cpu|cuda]
"""
import argparse
import sys
import time

import graphc
from graphc.datasets import digits
from graphc.layers import (Activation, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                           MaxPooling2D)
from graphc.models import Sequential
from graphc.utils import set_random_seed

REQUIRED_ACCURACY = 0.9


def build_model():
    model = Sequential()
    for i, filters in enumerate((16, 32)):          # two VGG blocks
        extra = {"input_shape": (8, 8, 1)} if i == 0 else {}
        for _ in range(2):
            model.add(Conv2D(filters, 3, padding="same", use_bias=False, **extra))
            model.add(BatchNormalization(momentum=0.9))
            model.add(Activation("relu"))
            extra = {}
        model.add(MaxPooling2D(2))
    model.add(Flatten())
    model.add(Dense(64, activation="relu"))
    model.add(Dropout(0.3))
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
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--target", choices=graphc.config.KNOWN_TARGETS, default=None,
                        help="backend (default: %s)" % graphc.config.default_target())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_digits()
    model = build_model()
    compiled = graphc.compile(model, target=args.target or graphc.config.default_target())

    start = time.perf_counter()
    compiled.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    seconds = time.perf_counter() - start
    loss, accuracy = compiled.evaluate(x_test, y_test, verbose=0)
    bn = model.layers[1]
    print(f"Trained {args.epochs} epochs in {seconds:.1f} s")
    # The moving statistics moved away from their initial 0 / 1: training updated them.
    print(f"First BatchNormalization moving mean, mean |m|: "
          f"{abs(bn.moving_mean.numpy()).mean():.4f}")
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f}")
    if accuracy < REQUIRED_ACCURACY:
        print(f"FAILED: test accuracy {accuracy:.4f} is below {REQUIRED_ACCURACY}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
