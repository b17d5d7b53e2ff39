"""Transfer learning: train a CNN base on digits 0-4, freeze it, train a new head on 5-9.

The two steps of the Keras transfer-learning guide, on the bundled 8x8 digits:

1. a convolutional ``base`` (Conv-BN-ReLU-MaxPool twice, then Flatten) is trained with a
   classifier head on the digits 0-4;
2. ``base.trainable = False``, and a new model — the Keras functional idiom
   ``x = base(inputs, training=False)`` and a fresh Dense head — learns the digits 5-9 from
   the frozen features.

``main()`` checks that every weight of the base — kernels, BatchNormalization's gamma/beta
and its moving statistics — is bit-identical before and after the second training, and that
the new head reaches at least 0.9 test accuracy on 5-9; it prints both.

    python examples/transfer_learning.py [--base-epochs 8] [--head-epochs 8]
"""
import argparse
import sys
import time

import numpy as np

from graphc.datasets import digits
from graphc.layers import (Activation, BatchNormalization, Conv2D, Dense, Flatten, Input,
                           MaxPooling2D)
from graphc.models import Model, Sequential
from graphc.optimizers import Adam
from graphc.utils import set_random_seed

REQUIRED_ACCURACY = 0.9


def build_base():
    # momentum=0.9, not Keras' 0.99: pre-training is ~180 steps, after which 0.99 would
    # leave 16% of the initial 0/1 in the moving statistics (0.99**180) — and the frozen
    # base normalizes with exactly those.
    return Sequential([
        Conv2D(16, 3, padding="same", use_bias=False, input_shape=(8, 8, 1)),
        BatchNormalization(momentum=0.9),
        Activation("relu"),
        MaxPooling2D(2),
        Conv2D(32, 3, padding="same", use_bias=False),
        BatchNormalization(momentum=0.9),
        Activation("relu"),
        MaxPooling2D(2),
        Flatten(),
    ], name="base")


def build_pretraining_model(base):
    """Step 1: the base with a classifier for the digits 0-4."""
    model = Sequential([base, Dense(64, activation="relu"), Dense(5, activation="softmax")],
                       name="pretraining")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def build_transfer_model(base):
    """Step 2: the frozen base under a new head for the digits 5-9 (labels 0-4)."""
    base.trainable = False
    inputs = Input(shape=(8, 8, 1))
    # training=False keeps the base's BatchNormalization in inference mode (Keras' advice
    # for fine-tuning, too), so its moving statistics stay as pre-training left them.
    x = base(inputs, training=False)
    x = Dense(64, activation="relu")(x)
    outputs = Dense(5, activation="softmax")(x)
    model = Model(inputs=inputs, outputs=outputs, name="transfer")
    # A larger step than Adam's default 1e-3 suits a fresh head on fixed features.
    model.compile(optimizer=Adam(learning_rate=3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def build_model():
    """The transfer model (its train graph updates the head only)."""
    return build_transfer_model(build_base())


def load_split():
    """(x, y) train and test pairs for the digits 0-4 and for 5-9 (labels shifted to
    0-4), images float32 in [0, 1] of shape (N, 8, 8, 1)."""
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    scale = lambda x: (x.astype("float32") / digits.MAX_PIXEL).reshape(-1, 8, 8, 1)  # noqa: E731
    x_train, x_test = scale(x_train), scale(x_test)
    low_tr, low_te = y_train < 5, y_test < 5
    return {
        "low": ((x_train[low_tr], y_train[low_tr]), (x_test[low_te], y_test[low_te])),
        "high": ((x_train[~low_tr], y_train[~low_tr] - 5),
                 (x_test[~low_te], y_test[~low_te] - 5)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-epochs", type=int, default=8)
    parser.add_argument("--head-epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    set_random_seed(args.seed)
    data = load_split()
    start = time.perf_counter()

    base = build_base()
    pretraining = build_pretraining_model(base)
    (x, y), (xt, yt) = data["low"]
    pretraining.fit(x, y, epochs=args.base_epochs, batch_size=args.batch_size, verbose=0)
    _, base_accuracy = pretraining.evaluate(xt, yt, verbose=0)
    print(f"Base on digits 0-4: test accuracy {base_accuracy:.4f}")

    transfer = build_transfer_model(base)
    frozen_before = [w.copy() for w in base.get_weights()]
    (x, y), (xt, yt) = data["high"]
    transfer.fit(x, y, epochs=args.head_epochs, batch_size=args.batch_size, verbose=0)
    _, head_accuracy = transfer.evaluate(xt, yt, verbose=0)
    frozen_after = base.get_weights()
    identical = (len(frozen_before) == len(frozen_after)
                 and all(a.dtype == b.dtype and np.array_equal(a, b)
                         for a, b in zip(frozen_before, frozen_after)))

    print(f"Trained in {time.perf_counter() - start:.1f} s")
    print(f"Trainable weights of the transfer model: "
          f"{[w.path for w in transfer.trainable_weights]}")
    print(f"Frozen base weights bit-identical after training the head "
          f"({len(frozen_after)} arrays): {'yes' if identical else 'NO'}")
    print(f"Head on digits 5-9: test accuracy {head_accuracy:.4f}")
    failed = []
    if not identical:
        failed.append("the frozen base's weights changed")
    if head_accuracy < REQUIRED_ACCURACY:
        failed.append(f"head accuracy {head_accuracy:.4f} is below {REQUIRED_ACCURACY}")
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
