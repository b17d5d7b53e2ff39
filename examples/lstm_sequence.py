"""An LSTM sequence classifier on a synthetic task it has to remember things for.

Each sequence has 20 steps of two features: a value drawn from N(0, 1) and a marker, 1 at
three random steps and 0 elsewhere. The label says whether the values at the marked steps
sum to more than zero — a classification form of the "adding problem" Hochreiter and
Schmidhuber used to show what the LSTM's gated memory is for: the model must pick out the
marked values, keep their running sum across the unmarked steps, and ignore the rest.

Written as the Keras tutorials write sequence models: ``LSTM`` over ``(steps, features)``
inputs, a ``Dense`` sigmoid head, binary crossentropy, integer 0/1 labels. Prints the
training loss of the first and last epoch and the test accuracy; exits with status 1 if
the accuracy is below 0.9.

    python examples/lstm_sequence.py [--epochs 10] [--train-size 4000] [--target ...]
"""
import argparse
import sys
import time

import numpy as np

import graphc
from graphc.layers import LSTM, Dense
from graphc.models import Sequential
from graphc.optimizers import Adam
from graphc.utils import set_random_seed

STEPS = 20
MARKED = 3
REQUIRED_ACCURACY = 0.9


def build_model():
    model = Sequential()
    model.add(LSTM(32, input_shape=(STEPS, 2)))
    model.add(Dense(1, activation="sigmoid"))
    # 3e-3 rather than Adam's 1e-3: the task is learnt in a third of the epochs.
    model.compile(optimizer=Adam(learning_rate=3e-3), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def make_data(n, rng):
    """``x`` (n, STEPS, 2): values and markers; ``y`` (n,): 1 where the marked values'
    sum is positive."""
    values = rng.standard_normal((n, STEPS)).astype("float32")
    markers = np.zeros((n, STEPS), "float32")
    for row in markers:
        row[rng.choice(STEPS, MARKED, replace=False)] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = ((values * markers).sum(axis=1) > 0).astype("int64")
    return x, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--target", choices=graphc.config.KNOWN_TARGETS, default=None,
                        help="backend (default: %s)" % graphc.config.default_target())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x_train, y_train = make_data(args.train_size, rng)
    x_test, y_test = make_data(1000, rng)
    model = build_model()
    compiled = graphc.compile(model, target=args.target or graphc.config.default_target())

    start = time.perf_counter()
    history = compiled.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                           verbose=0)
    seconds = time.perf_counter() - start
    loss, accuracy = compiled.evaluate(x_test, y_test, verbose=0)
    losses = history.history["loss"]
    print(f"Trained {args.epochs} epochs in {seconds:.1f} s")
    print(f"Training loss: {losses[0]:.4f} (first epoch) -> {losses[-1]:.4f} (last)")
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f}")
    if accuracy < REQUIRED_ACCURACY:
        print(f"FAILED: test accuracy {accuracy:.4f} is below {REQUIRED_ACCURACY}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
