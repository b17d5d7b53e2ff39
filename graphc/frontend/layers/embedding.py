"""``Embedding``: integer indices -> rows of an ``(input_dim, output_dim)`` matrix, as one
``gather`` op (its gradient is a ``scatter_add``, so duplicate indices in a batch add up).

Semantics a user should know:
* Integer inputs reach the gather unchanged (the layer opts out of the base Layer's cast to
  float); float inputs — e.g. from a Sequential whose Input is float32 — are truncated to
  int32 first, as Keras does. Declare ``Input(shape=(T,), dtype="int32")`` to skip that.
* An index outside ``[0, input_dim)`` (negatives included) gives a zero vector — where
  TF on CPU would raise — because a compiled step cannot raise (see ``gather``).
* ``mask_zero=True`` is accepted and serialized, but graphc does not propagate masks:
  downstream layers see the padded positions (index 0's row) like any other.
"""
from __future__ import annotations

import numpy as np

from graphc.frontend import ops
from graphc.frontend.layers.base import (Layer, get_constraint, get_initializer,
                                         get_regularizer, serialize_object)
from graphc.ir.dtypes import DType


class Embedding(Layer):
    """Keras ``Embedding(input_dim, output_dim, embeddings_initializer="uniform", ...)``;
    weight ``embeddings`` of shape ``(input_dim, output_dim)``; output
    ``input_shape + (output_dim,)``."""

    _cast_inputs = False

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, input_length=None, activity_regularizer=None, **kwargs):
        # Keras 2's ``input_length`` fixed the sequence length; Keras 3 ignores it. Here it
        # still serves as the input shape hint a Sequential model builds from (as Keras 2),
        # unless an explicit input shape was given.
        if input_length is not None and not any(
                k in kwargs for k in ("input_shape", "batch_input_shape", "batch_shape")):
            kwargs["input_shape"] = (int(input_length),)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        d = self._desc
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        if self.input_dim <= 0 or self.output_dim <= 0:
            raise ValueError(f"{d}: input_dim and output_dim must be positive integers, got "
                             f"input_dim={input_dim!r}, output_dim={output_dim!r}")
        self.embeddings_initializer = get_initializer(embeddings_initializer)
        self.embeddings_regularizer = get_regularizer(embeddings_regularizer)
        self.embeddings_constraint = get_constraint(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        if self.mask_zero:
            import warnings
            # Silent divergence from Keras would be worse than a warning: downstream RNNs
            # and pooling still process the padded (index 0) steps.
            warnings.warn(f"Embedding '{self.name}': mask_zero=True is accepted but graphc does "
                          "not propagate masks yet; layers after it also process the padded "
                          "steps (results differ from Keras on padded sequences)",
                          UserWarning, stacklevel=2)
        self.input_length = None if input_length is None else int(input_length)
        if weights is None:
            weights = self._initial_weights
            self._initial_weights = None
        if weights is not None:
            # As Keras: the layer needs no input shape to build, so build now. A bare
            # matrix is accepted as well as the one-element list get_weights returns.
            if isinstance(weights, np.ndarray) or (
                    isinstance(weights, (list, tuple)) and len(weights) and
                    np.ndim(weights[0]) == 1):
                weights = [weights]
            self.build()
            self.set_weights(weights)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(name="embeddings",
                                          shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        self.built = True

    def call(self, inputs):
        if ops.dtype_of(inputs) not in (DType.i32, DType.i64):
            inputs = ops.cast(inputs, "int32")
        return ops.apply("gather", self.embeddings, inputs, axis=0)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def get_config(self):
        cfg = {**super().get_config(), "input_dim": self.input_dim,
               "output_dim": self.output_dim,
               "embeddings_initializer": serialize_object(self.embeddings_initializer,
                                                          "initializers"),
               "embeddings_regularizer": serialize_object(self.embeddings_regularizer,
                                                          "regularizers"),
               "activity_regularizer": serialize_object(self.activity_regularizer,
                                                        "regularizers"),
               "embeddings_constraint": serialize_object(self.embeddings_constraint,
                                                         "constraints"),
               "mask_zero": self.mask_zero}
        if self.input_length is not None:
            cfg["input_length"] = self.input_length
        return cfg
