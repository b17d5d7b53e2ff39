"""graphc.datasets.digits: the bundled data loads, splits deterministically and completely."""
import numpy as np
import pytest

from graphc.datasets import digits
from graphc.errors import DataError


def _rows(x, y):
    """Each sample as one byte string (image + label), sorted: a multiset to compare."""
    flat = np.concatenate([x.reshape(len(x), -1), y.reshape(-1, 1)], axis=1)
    return sorted(r.tobytes() for r in flat)


def test_shapes_dtypes_and_ranges():
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.shape == (1438, 8, 8) and y_train.shape == (1438,)
    assert x_test.shape == (359, 8, 8) and y_test.shape == (359,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8
    assert len(x_train) + len(x_test) == digits.NUM_SAMPLES == 1797
    assert x_train.max() <= 16 and x_test.max() <= 16
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))


def test_split_is_a_partition_of_the_data():
    images, labels = digits._load_arrays()
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    both = _rows(np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test]))
    assert both == _rows(images, labels)      # nothing lost, nothing used twice


def test_deterministic_and_seed_dependent():
    a = digits.load_data()
    b = digits.load_data()
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    (_, y_other), _ = digits.load_data(seed=1)
    assert not np.array_equal(a[0][1], y_other)


def test_stratified_and_shuffled():
    (_, y_train), (_, y_test) = digits.load_data(test_split=0.2)
    counts = np.bincount(np.concatenate([y_train, y_test]), minlength=10)
    share = np.bincount(y_test, minlength=10) - counts * 0.2
    assert np.all(np.abs(share) < 1)
    # Keras' validation_split takes the last samples: they must not be one class.
    assert len(np.unique(y_train[-144:])) == 10


@pytest.mark.parametrize("split,n_test", [(0.0, 0), (0.5, 898), (1.0, 1797)])
def test_split_sizes(split, n_test):
    (x_train, _), (x_test, _) = digits.load_data(test_split=split)
    assert len(x_test) == n_test and len(x_train) == 1797 - n_test


@pytest.mark.parametrize("split", [-0.1, 1.5])
def test_bad_split(split):
    with pytest.raises(DataError, match="test_split"):
        digits.load_data(test_split=split)
