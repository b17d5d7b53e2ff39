"""The UCI ML optical recognition of handwritten digits (8x8 images, 10 classes), bundled.

Data: E. Alpaydin, C. Kaynak (1998), "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository, CC BY 4.0 — the 1797-image set as bundled by scikit-learn. Each pixel
counts the "on" cells of a 4x4 block of a 32x32 bitmap, so values are integers 0..16.
"""
from __future__ import annotations

import io
from importlib import resources

import numpy as np

from graphc.errors import DataError

NUM_CLASSES = 10
NUM_SAMPLES = 1797
MAX_PIXEL = 16


def _load_arrays() -> tuple[np.ndarray, np.ndarray]:
    # importlib.resources rather than a path next to __file__: it also works from a wheel
    # or a zip import, where the file need not exist on disk.
    blob = resources.files("graphc.datasets").joinpath("data", "digits.npz").read_bytes()
    with np.load(io.BytesIO(blob)) as data:
        return data["images"], data["labels"]


def load_data(test_split: float = 0.2, seed: int = 113):
    """Load the digits as ``(x_train, y_train), (x_test, y_test)``.

    ``x`` is uint8 of shape ``(N, 8, 8)`` with values 0..16 (divide by 16 to scale to
    [0, 1]); ``y`` is uint8 of shape ``(N,)`` with labels 0..9.

    The split is stratified and deterministic: ``round(1797 * test_split)`` test samples are
    shared out among the classes in proportion to their sizes (largest remainder first,
    ties to the lower label), each class's test samples are drawn at random with
    ``numpy.random.default_rng(seed)``, and both parts are then shuffled with the same
    generator, so that classes are interleaved (Keras' ``validation_split`` takes the *last*
    samples, which must not all be one digit). The same ``(test_split, seed)`` always gives
    the same arrays, on every platform.
    """
    test_split = float(test_split)
    if not 0.0 <= test_split <= 1.0:
        raise DataError(f"digits.load_data: test_split must be in [0, 1], got {test_split}")
    images, labels = _load_arrays()
    rng = np.random.default_rng(seed)

    # Per-class test counts by the largest-remainder method, so the total is exactly
    # round(N * test_split) and every class gets its fair share.
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    n_test = int(round(len(labels) * test_split))
    quota = counts * (n_test / len(labels))
    per_class = np.floor(quota).astype(np.int64)
    by_remainder = np.argsort(-(quota - per_class), kind="stable")
    per_class[by_remainder[: n_test - int(per_class.sum())]] += 1

    test_idx = []
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(labels == c)
        test_idx.append(rng.permutation(members)[: per_class[c]])
    test_idx = np.concatenate(test_idx)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(test_idx)

    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])
