"""Merge layers for multi-input graphs: ``Add``, ``Subtract``, ``Multiply``, ``Average``,
``Maximum``, ``Minimum``, ``Concatenate`` and their functional forms (``add([a, b])``).
Inputs must agree in shape (Keras allows broadcasting only where one dim is 1)."""
from __future__ import annotations

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.keras_tensor import shape_str
from graphc.frontend.layers.base import Layer


class _Merge(Layer):
    _min_inputs = 2

    def _check(self, shapes):
        if not isinstance(shapes, (list, tuple)) or not shapes or not isinstance(
                shapes[0], (list, tuple)):
            raise ValueError(f"{self._desc}: expects a list of at least {self._min_inputs} "
                             f"inputs")
        if len(shapes) < self._min_inputs:
            raise ValueError(f"{self._desc}: expects at least {self._min_inputs} inputs, got "
                             f"{len(shapes)}")

    def build(self, input_shape):
        self._check(input_shape)
        ranks = {len(s) for s in input_shape}
        if len(ranks) == 1:
            for axis in range(1, len(input_shape[0])):
                dims = {s[axis] for s in input_shape if s[axis] not in (None, 1)}
                if len(dims) > 1:
                    raise ShapeError(f"{self._desc}: inputs must have matching shapes, got "
                                     f"{', '.join(shape_str(s) for s in input_shape)}")
        self.built = True

    def call(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = self._merge(out, x)
        return self._finish(out, len(inputs))

    def _finish(self, out, n):
        return out


class Add(_Merge):
    def _merge(self, a, b): return ops.add(a, b)


class Subtract(_Merge):
    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and len(input_shape) != 2:
            raise ValueError(f"{self._desc}: expects exactly 2 inputs, got {len(input_shape)}")
        super().build(input_shape)

    def _merge(self, a, b): return ops.subtract(a, b)


class Multiply(_Merge):
    def _merge(self, a, b): return ops.multiply(a, b)


class Average(_Merge):
    def _merge(self, a, b): return ops.add(a, b)

    def _finish(self, out, n): return ops.multiply(out, 1.0 / n)


class Maximum(_Merge):
    def _merge(self, a, b): return ops.maximum(a, b)


class Minimum(_Merge):
    def _merge(self, a, b): return ops.minimum(a, b)


class Concatenate(_Merge):
    _min_inputs = 1

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def build(self, input_shape):
        self._check(input_shape)
        ranks = {len(s) for s in input_shape}
        if len(ranks) != 1:
            raise ShapeError(f"{self._desc}: inputs must have the same rank, got "
                             f"{', '.join(shape_str(s) for s in input_shape)}")
        r = ranks.pop()
        ax = self.axis % r
        for i in range(1, r):
            if i == ax:
                continue
            dims = {s[i] for s in input_shape if s[i] is not None}
            if len(dims) > 1:
                raise ShapeError(f"{self._desc}: inputs must match in every dimension but "
                                 f"the concatenation axis {self.axis}, got "
                                 f"{', '.join(shape_str(s) for s in input_shape)}")
        self.built = True

    def call(self, inputs):
        r = len(inputs[0].shape)
        return ops.apply("concat", *inputs, axis=self.axis % r)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def add(inputs, **kwargs): return Add(**kwargs)(inputs)
def subtract(inputs, **kwargs): return Subtract(**kwargs)(inputs)
def multiply(inputs, **kwargs): return Multiply(**kwargs)(inputs)
def average(inputs, **kwargs): return Average(**kwargs)(inputs)
def maximum(inputs, **kwargs): return Maximum(**kwargs)(inputs)
def minimum(inputs, **kwargs): return Minimum(**kwargs)(inputs)
def concatenate(inputs, axis=-1, **kwargs): return Concatenate(axis=axis, **kwargs)(inputs)
