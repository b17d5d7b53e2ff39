"""Activation layers (Keras 3 names, arguments and defaults): ``ReLU``, ``LeakyReLU``,
``PReLU``, ``ELU``, ``Softmax``. Each is a few ``graphc.ops`` calls, so every backend runs
them without a kernel of their own."""
from __future__ import annotations

from graphc.frontend import activations, ops
from graphc.frontend.layers.base import (InputSpec, Layer, get_constraint, get_initializer,
                                         get_regularizer, serialize_object)


def _leaky(x, negative_slope):
    # The documented form ``x if x >= 0 else slope * x`` (TF's and JAX's kernels). Keras'
    # numpy backend writes max(x, slope * x): the same for every slope <= 1.
    return ops.where(ops.greater_equal(x, 0.0), x, ops.multiply(x, float(negative_slope)))


class ReLU(Layer):
    """Keras ``ReLU(max_value=None, negative_slope=0.0, threshold=0.0)``:
    ``max_value`` if x >= max_value, x if threshold <= x < max_value (x > threshold exactly
    for the positive part, as Keras), ``negative_slope * (x - threshold)`` otherwise."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0.0:
            raise ValueError(f"{self._desc}: max_value cannot be negative, got "
                             f"max_value={max_value}")
        if negative_slope is None or negative_slope < 0.0:
            raise ValueError(f"{self._desc}: negative_slope cannot be None or negative, got "
                             f"negative_slope={negative_slope}")
        if threshold is None or threshold < 0.0:
            raise ValueError(f"{self._desc}: threshold cannot be None or negative, got "
                             f"threshold={threshold}")
        self.max_value = max_value
        self.negative_slope = negative_slope
        self.threshold = threshold
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        # Keras 3's ReLU.static_call, step for step.
        x = inputs
        slope, top, t = float(self.negative_slope), self.max_value, float(self.threshold)
        if slope == 0.0 and top is None and t == 0.0:
            return ops.relu(x)
        if slope != 0.0:
            if top is None and t == 0.0:
                return _leaky(x, slope)
            neg = ops.relu(ops.subtract(t, x)) if t != 0.0 else ops.relu(ops.negative(x))
        if t != 0.0:
            y = ops.where(ops.greater(x, t), x, ops.multiply(x, 0.0))
        else:
            y = ops.relu(x)
        if top is not None:
            y = ops.clip(y, 0.0, float(top))
        if slope != 0.0:
            y = ops.subtract(y, ops.multiply(neg, slope))
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(Layer):
    """Keras 3 ``LeakyReLU(negative_slope=0.3)``; the Keras 2 keyword ``alpha=`` (found in
    old configs) is accepted as the slope."""

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError(f"{self._desc}: negative_slope cannot be None or negative, got "
                             f"negative_slope={negative_slope}")
        self.negative_slope = negative_slope
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        return _leaky(inputs, self.negative_slope)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class PReLU(Layer):
    """Keras ``PReLU``: ``relu(x) - alpha * relu(-x)`` with a learned ``alpha`` shaped like
    the input without its batch axis, 1 on each of ``shared_axes`` (1-based, as Keras)."""

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None,
                 alpha_constraint=None, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.alpha_initializer = get_initializer(alpha_initializer)
        self.alpha_regularizer = get_regularizer(alpha_regularizer)
        self.alpha_constraint = get_constraint(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        elif not isinstance(shared_axes, (list, tuple)):
            self.shared_axes = [int(shared_axes)]
        else:
            self.shared_axes = [int(a) for a in shared_axes]

    def build(self, input_shape):
        rank = len(input_shape)
        param_shape = list(input_shape[1:])
        for i in self.shared_axes or []:
            if not 1 <= i < rank:
                raise ValueError(f"{self._desc}: shared_axes {self.shared_axes} must be in "
                                 f"[1, {rank - 1}] for input shape {tuple(input_shape)}")
            param_shape[i - 1] = 1
        if any(d is None for d in param_shape):
            raise ValueError(f"{self._desc}: every non-shared axis of the input must be "
                             f"defined, got input shape {tuple(input_shape)}")
        self.alpha = self.add_weight(shape=tuple(param_shape), name="alpha",
                                     initializer=self.alpha_initializer,
                                     regularizer=self.alpha_regularizer,
                                     constraint=self.alpha_constraint)
        shared = set(self.shared_axes or [])
        self.input_spec = InputSpec(ndim=rank, axes={i: input_shape[i]
                                                     for i in range(1, rank)
                                                     if i not in shared})
        self.built = True

    def call(self, inputs):
        pos = ops.relu(inputs)
        return ops.subtract(pos, ops.multiply(self.alpha, ops.relu(ops.negative(inputs))))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(),
                "alpha_initializer": serialize_object(self.alpha_initializer, "initializers"),
                "alpha_regularizer": serialize_object(self.alpha_regularizer, "regularizers"),
                "alpha_constraint": serialize_object(self.alpha_constraint, "constraints"),
                "shared_axes": self.shared_axes}


class ELU(Layer):
    """Keras ``ELU(alpha=1.0)``: x for x >= 0, ``alpha * (exp(x) - 1)`` otherwise.
    (Keras 3 leaves ``alpha`` out of its config and so loses it on save; graphc keeps it —
    Keras still reads such a config, as ``alpha`` is an ``__init__`` argument.)"""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        return activations.elu(inputs, alpha=self.alpha)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


# Keras adds (1 - mask) * this to masked-out logits (-3e4 for float16, which graphc lacks).
_LARGE_NEGATIVE = -1e9


class Softmax(Layer):
    """Keras ``Softmax(axis=-1)``; ``axis`` may be a list (softmax over several axes
    jointly). ``mask`` (1 keep, 0 drop; broadcastable to the input) pushes dropped logits
    to -1e9 first, as Keras does."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else int(axis)
        self.supports_masking = True
        self.built = True

    def call(self, inputs, mask=None):
        x = inputs
        if mask is not None:
            keep = ops.cast(mask, ops.dtype_of(x))
            x = ops.add(x, ops.multiply(ops.subtract(1.0, keep), _LARGE_NEGATIVE))
        if isinstance(self.axis, list) and len(self.axis) > 1:
            # Keras: exp(x - logsumexp(x, axes)); the max-shifted ratio is the same function
            # and never overflows.
            axes = tuple(self.axis)
            e = ops.exp(ops.subtract(x, ops.max(x, axis=axes, keepdims=True)))
            return ops.divide(e, ops.sum(e, axis=axes, keepdims=True))
        axis = self.axis[0] if isinstance(self.axis, list) else self.axis
        return activations.softmax(x, axis=axis)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

