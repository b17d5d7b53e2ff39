"""``InputLayer`` and ``Input(...)``: where a layer graph starts. An InputLayer has one node
with no inputs and one output KerasTensor named like the layer (``input_layer``, ...)."""
from __future__ import annotations

from graphc.frontend.keras_tensor import KerasTensor, standardize_dtype
from graphc.frontend.layers.base import Layer, Node


class InputLayer(Layer):
    """Keras ``InputLayer(shape=None, batch_size=None, dtype=None, sparse=None,
    batch_shape=None, input_tensor=None, name=None)``; the Keras 2 spellings
    ``input_shape=`` and ``batch_input_shape=`` are accepted too."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None,
                 batch_shape=None, input_tensor=None, optional=False, name=None, **kwargs):
        if shape is None:
            shape = kwargs.pop("input_shape", None)
        if batch_shape is None:
            batch_shape = kwargs.pop("batch_input_shape", None)
        kwargs.pop("ragged", None)
        kwargs.pop("trainable", None)
        if sparse:
            raise ValueError("InputLayer: sparse inputs are not supported by graphc")
        super().__init__(name=name, dtype=dtype, **kwargs)
        if input_tensor is not None:
            if not isinstance(input_tensor, KerasTensor):
                raise TypeError(f"InputLayer '{self.name}': input_tensor must be a "
                                f"KerasTensor, got {type(input_tensor).__name__}")
            batch_shape = input_tensor.shape
            dtype = input_tensor.dtype
        if shape is not None and batch_shape is not None:
            raise ValueError(f"InputLayer '{self.name}': pass `shape` or `batch_shape`, "
                             f"not both")
        if batch_shape is None:
            if shape is None:
                raise ValueError(f"InputLayer '{self.name}': you must pass a `shape` "
                                 f"argument, e.g. Input(shape=(784,))")
            if isinstance(shape, int):
                shape = (shape,)
            batch_shape = (batch_size,) + tuple(shape)
        self.batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        self._dtype = standardize_dtype(dtype)
        self.sparse = False
        self.optional = bool(optional)
        self.built = True
        self._build_input_shape = self.batch_shape
        kt = input_tensor if input_tensor is not None else \
            KerasTensor(self.batch_shape, self._dtype, name=self.name)
        Node(self, (), {}, kt)
        self._input_tensor = kt

    def call(self, inputs):
        return inputs

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self._dtype,
                "sparse": False, "name": self.name}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
          name=None, tensor=None, optional=False):
    """Keras ``Input``: a symbolic KerasTensor that starts a functional model."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                       batch_shape=batch_shape, name=name, input_tensor=tensor,
                       optional=optional)
    return layer.output
