"""Normalization layers: ``BatchNormalization`` and ``LayerNormalization`` (Keras 3
semantics, weights in Keras shapes and order), composed from ``graphc.ops`` so every backend
gets them without a dedicated kernel and autodiff differentiates through batch statistics.

Training-mode BatchNormalization writes the new moving statistics into the trace's
``state_updates``; the train-step builder turns them into graph outputs that the runtime
copies back into the variables (and eager calls assign them directly).
"""
from __future__ import annotations

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.layers.base import (InputSpec, Layer, get_constraint, get_initializer,
                                         get_regularizer, serialize_object)
from graphc.frontend.tracing import current_trace


def _norm_axes(axis, rank: int, desc: str) -> list[int]:
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            raise ShapeError(f"{desc}: axis {a} is out of range for an input of rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"{desc}: duplicate axis in {axis!r}")
    return out


def _normalize(x, mean, var, gamma, beta, epsilon):
    """Keras' ``ops.batch_normalization`` arithmetic: ``x * inv + (beta - mean * inv)`` with
    ``inv = gamma / sqrt(var + eps)``. Same order of operations as Keras so that the two agree
    to float rounding, and it leaves one multiply-add per element after per-channel folding."""
    inv = ops.divide(1.0, ops.sqrt(ops.add(var, epsilon)))
    if gamma is not None:
        inv = ops.multiply(inv, gamma)
    res = ops.multiply(ops.negative(mean), inv)
    if beta is not None:
        res = ops.add(res, beta)
    return ops.add(ops.multiply(x, inv), res)


def _moments(x, axes):
    """Mean and biased variance over ``axes`` (keepdims). Two passes (mean of squared
    deviations), like ``tf.nn.moments``: Keras' numpy backend uses E[x²] - E[x]², which is
    the same value in exact arithmetic but loses digits when |mean| >> std."""
    mean = ops.mean(x, axis=tuple(axes), keepdims=True)
    var = ops.mean(ops.square(ops.subtract(x, mean)), axis=tuple(axes), keepdims=True)
    return mean, var


class BatchNormalization(Layer):
    """Keras ``BatchNormalization``.

    * training (``fit``, or ``training=True``) and the layer trainable: normalize with the
      batch mean and biased variance over every axis but ``axis``, and update
      ``moving = moving * momentum + batch_stat * (1 - momentum)`` (Keras 3 uses the biased
      batch variance for the moving variance too);
    * otherwise (inference, or ``trainable = False`` — Keras 3 runs a frozen BN in inference
      mode even when ``training=True``): normalize with the moving statistics.

    ``axis`` is an int (Keras 3) or, as in Keras 2, a list of axes; with several axes the
    weights have the input's rank with 1 on the other axes (Keras 2's layout).
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, **kwargs):
        # Keras 2 configs carry these; they change nothing in a single-device static graph.
        for k in ("fused", "renorm", "renorm_clipping", "renorm_momentum",
                  "virtual_batch_size", "adjustment", "trainable_weights"):
            v = kwargs.pop(k, None)
            if k == "renorm" and v:
                raise ValueError("BatchNormalization: renorm=True is not supported")
            if k == "virtual_batch_size" and v is not None:
                raise ValueError("BatchNormalization: virtual_batch_size is not supported")
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            axis = [int(a) for a in axis]
            self.axis = axis[0] if len(axis) == 1 else axis
        else:
            self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.synchronized = bool(synchronized)
        self.beta_initializer = get_initializer(beta_initializer)
        self.gamma_initializer = get_initializer(gamma_initializer)
        self.moving_mean_initializer = get_initializer(moving_mean_initializer)
        self.moving_variance_initializer = get_initializer(moving_variance_initializer)
        self.beta_regularizer = get_regularizer(beta_regularizer)
        self.gamma_regularizer = get_regularizer(gamma_regularizer)
        self.beta_constraint = get_constraint(beta_constraint)
        self.gamma_constraint = get_constraint(gamma_constraint)
        self.supports_masking = True
        self.gamma = self.beta = None

    def build(self, input_shape):
        rank = len(input_shape)
        axes = _norm_axes(self.axis, rank, self._desc)
        if 0 in axes and rank > 1:
            raise ValueError(f"{self._desc}: cannot normalize over the batch axis "
                             f"(axis={self.axis!r} for input shape {tuple(input_shape)})")
        for a in axes:
            if input_shape[a] is None:
                raise ValueError(f"{self._desc}: axis {a} of the input must be defined, got "
                                 f"input shape {tuple(input_shape)}")
        if len(axes) == 1:
            shape = (input_shape[axes[0]],)
        else:
            shape = tuple(input_shape[i] if i in axes else 1 for i in range(rank))
        if self.scale:
            self.gamma = self.add_weight(shape=shape, name="gamma",
                                         initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint, trainable=True)
        if self.center:
            self.beta = self.add_weight(shape=shape, name="beta",
                                        initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint, trainable=True)
        self.moving_mean = self.add_weight(shape=shape, name="moving_mean",
                                           initializer=self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight(shape=shape, name="moving_variance",
                                               initializer=self.moving_variance_initializer,
                                               trainable=False)
        self.input_spec = InputSpec(ndim=rank, axes={a: input_shape[a] for a in axes})
        self._axes = axes
        self.built = True

    def call(self, inputs, training=None, mask=None):
        x = inputs
        rank = len(x.shape)
        axes = self._axes
        bshape = tuple(x.shape[i] if i in axes else 1 for i in range(rank))
        reduction = [i for i in range(rank) if i not in axes]
        gamma = ops.reshape(self.gamma, bshape) if self.gamma is not None else None
        beta = ops.reshape(self.beta, bshape) if self.beta is not None else None
        if training and self.trainable:
            mean, var = (_moments(x, reduction) if mask is None else
                         self._masked_moments(x, mask, reduction))
            ctx = current_trace()
            if ctx is not None:
                pshape = self.moving_mean.shape
                for v, stat in ((self.moving_mean, mean), (self.moving_variance, var)):
                    # A layer called twice in one step sees the first call's update, as the
                    # sequential assigns do in Keras.
                    old = ctx.state_updates.get(v, v)
                    ctx.state_updates[v] = ops.add(
                        ops.multiply(old, self.momentum),
                        ops.multiply(ops.reshape(stat, pshape), 1.0 - self.momentum))
        else:
            mean = ops.reshape(self.moving_mean, bshape)
            var = ops.reshape(self.moving_variance, bshape)
        return _normalize(x, mean, var, gamma, beta, self.epsilon)

    def _masked_moments(self, x, mask, reduction):
        """Keras' masked statistics: ``mask`` (the input's shape without the channel axis)
        weights each position; the 1e-7 (Keras' backend epsilon) guards an all-masked
        batch."""
        if len(mask.shape) != len(x.shape) - 1:
            raise ShapeError(f"{self._desc}: the mask must have one dimension less than the "
                             f"inputs, got mask shape {tuple(mask.shape)} for inputs "
                             f"{tuple(x.shape)}")
        w = ops.expand_dims(ops.cast(mask, ops.dtype_of(x)), -1)
        wx = ops.multiply(w, x)
        red = tuple(reduction)
        count = ops.add(ops.sum(w, axis=red, keepdims=True), 1e-7)
        mean = ops.divide(ops.sum(wx, axis=red, keepdims=True), count)
        # As Keras: deviations of the *weighted* inputs, weighted once more.
        sq = ops.square(ops.subtract(wx, mean))
        var = ops.divide(ops.sum(ops.multiply(w, sq), axis=red, keepdims=True), count)
        return mean, var

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(),
                "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": serialize_object(self.beta_initializer, "initializers"),
                "gamma_initializer": serialize_object(self.gamma_initializer, "initializers"),
                "moving_mean_initializer": serialize_object(self.moving_mean_initializer,
                                                            "initializers"),
                "moving_variance_initializer": serialize_object(
                    self.moving_variance_initializer, "initializers"),
                "beta_regularizer": serialize_object(self.beta_regularizer, "regularizers"),
                "gamma_regularizer": serialize_object(self.gamma_regularizer, "regularizers"),
                "beta_constraint": serialize_object(self.beta_constraint, "constraints"),
                "gamma_constraint": serialize_object(self.gamma_constraint, "constraints"),
                "synchronized": self.synchronized}


class LayerNormalization(Layer):
    """Keras ``LayerNormalization``: per sample, normalize over ``axis`` (int or list) with
    the mean and biased variance there; ``gamma``/``beta`` have the shape of those axes (in
    the order given). ``rms_scaling=True`` ignores ``center``/``scale`` and returns
    ``x / sqrt(var + eps) * gamma`` — Keras 3 computes the *variance* there (mean removed),
    not the mean of squares, and graphc does the same for parity.

    As Keras, ``axis`` becomes a list once the layer is built (visible in ``get_config``).
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = [int(a) for a in axis]
        elif isinstance(axis, int):
            self.axis = axis
        else:
            raise TypeError(f"{self._desc}: expected an int or a list/tuple of ints for "
                            f"'axis', got {axis!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.rms_scaling = bool(rms_scaling)
        self.beta_initializer = get_initializer(beta_initializer)
        self.gamma_initializer = get_initializer(gamma_initializer)
        self.beta_regularizer = get_regularizer(beta_regularizer)
        self.gamma_regularizer = get_regularizer(gamma_regularizer)
        self.beta_constraint = get_constraint(beta_constraint)
        self.gamma_constraint = get_constraint(gamma_constraint)
        self.supports_masking = True
        self.gamma = self.beta = None

    def build(self, input_shape):
        rank = len(input_shape)
        _norm_axes(self.axis, rank, self._desc)      # range check, naming the layer
        if not isinstance(self.axis, list):
            self.axis = [self.axis]
        shape = tuple(input_shape[a] for a in self.axis)
        if any(d is None for d in shape):
            raise ValueError(f"{self._desc}: the normalized axes {self.axis} of the input must "
                             f"be defined, got input shape {tuple(input_shape)}")
        if self.scale or self.rms_scaling:
            self.gamma = self.add_weight(name="gamma", shape=shape,
                                         initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint, trainable=True)
        if self.center and not self.rms_scaling:
            self.beta = self.add_weight(name="beta", shape=shape,
                                        initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint, trainable=True)
        self.built = True

    def call(self, inputs):
        x = inputs
        rank = len(x.shape)
        axes = sorted(_norm_axes(self.axis, rank, self._desc))
        bshape = tuple(x.shape[i] if i in axes else 1 for i in range(rank))
        # Keras reshapes (not transposes) the weights to the broadcast shape.
        gamma = ops.reshape(self.gamma, bshape) if self.gamma is not None else None
        beta = ops.reshape(self.beta, bshape) if self.beta is not None else None
        mean, var = _moments(x, axes)
        if self.rms_scaling:
            out = ops.multiply(x, ops.divide(1.0, ops.sqrt(ops.add(var, self.epsilon))))
            return ops.multiply(out, gamma) if gamma is not None else out
        return _normalize(x, mean, var, gamma, beta, self.epsilon)

    def compute_output_shape(self, input_shape):
        _norm_axes(self.axis, len(input_shape), self._desc)
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(),
                "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "rms_scaling": self.rms_scaling,
                "beta_initializer": serialize_object(self.beta_initializer, "initializers"),
                "gamma_initializer": serialize_object(self.gamma_initializer, "initializers"),
                "beta_regularizer": serialize_object(self.beta_regularizer, "regularizers"),
                "gamma_regularizer": serialize_object(self.gamma_regularizer, "regularizers"),
                "beta_constraint": serialize_object(self.beta_constraint, "constraints"),
                "gamma_constraint": serialize_object(self.gamma_constraint, "constraints")}
