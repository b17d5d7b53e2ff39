"""Reshaping layers: ``Flatten`` and ``Reshape`` (batch dimension untouched)."""
from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.keras_tensor import shape_str
from graphc.frontend.layers.base import InputSpec, Layer


class Flatten(Layer):
    """``(batch, d1, d2, ...)`` -> ``(batch, d1*d2*...)``; rank-1 input gives ``(batch, 1)``.
    ``data_format='channels_first'`` moves channels last first, as Keras does."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        df = "channels_last" if data_format is None else str(data_format).lower()
        if df not in ("channels_last", "channels_first"):
            raise ValueError(f"{self._desc}: data_format must be 'channels_last' or "
                             f"'channels_first', got {data_format!r}")
        self.data_format = df
        self.input_spec = InputSpec(min_ndim=1)

    def call(self, inputs):
        x = inputs
        r = len(x.shape)
        if self.data_format == "channels_first" and r > 2:
            x = ops.transpose(x, [0] + list(range(2, r)) + [1])
        n = int(np.prod(x.shape[1:])) if r > 1 else 1
        return ops.reshape(x, (x.shape[0], n))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(Layer):
    """``Reshape(target_shape)``: ``(batch,) + target_shape``; one entry may be -1."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        if isinstance(target_shape, int):
            target_shape = (target_shape,)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(
                d == 0 or d < -1 for d in self.target_shape):
            raise ValueError(f"{self._desc}: target_shape {self.target_shape} may hold at "
                             f"most one -1 and otherwise positive sizes")

    def _resolve(self, in_shape):
        """The concrete target for an input shape (batch excluded); None if unknown."""
        if any(d is None for d in in_shape[1:]):
            return None
        total = int(np.prod(in_shape[1:]))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        out = list(self.target_shape)
        if -1 in out:
            if total % known:
                out = None
            else:
                out[out.index(-1)] = total // known
        elif known != total:
            out = None
        if out is None:
            raise ShapeError(f"{self._desc}: cannot reshape input shape {shape_str(in_shape)} "
                             f"({total} values per sample) to target shape "
                             f"{shape_str(self.target_shape)}")
        return tuple(out)

    def build(self, input_shape):
        self._resolve(tuple(input_shape))   # fail at definition time, naming the layer
        self.built = True

    def call(self, inputs):
        target = self._resolve((None,) + tuple(inputs.shape[1:]))
        return ops.reshape(inputs, (inputs.shape[0],) + target)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
