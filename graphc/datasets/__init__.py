"""Small data sets bundled with graphc (``graphc.datasets.digits``), loaded like
``keras.datasets``: ``(x_train, y_train), (x_test, y_test) = digits.load_data()``.

Everything here ships inside the package: no download, so examples and tests run offline.
"""
from graphc.datasets import digits

__all__ = ["digits"]
