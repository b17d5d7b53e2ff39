"""Shape, noise, regularization and dot-product layers (Keras 3 semantics): ``Permute``,
``RepeatVector``, ``GaussianNoise``, ``GaussianDropout``, ``SpatialDropout1D/2D/3D``,
``ActivityRegularization`` and the ``Dot`` merge layer (with its functional form ``dot``).

All are compositions of existing ops. Gaussian noise is drawn from the counter-based
``random_uniform`` op (so CPU and CUDA draw the same noise for the same seed and step) and
shaped by the inverse normal CDF — see ``standard_normal``.
"""
from __future__ import annotations

import math
import operator

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.keras_tensor import shape_str
from graphc.frontend.layers.base import InputSpec, Layer, stable_hash31
from graphc.frontend.layers.core import Dropout
from graphc.frontend.tracing import current_trace

# --------------------------------------------------------------------------------------
# Gaussian noise from counter-based uniforms
# --------------------------------------------------------------------------------------

# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011), single precision:
# the form TensorFlow/XLA and PyTorch also use. Horner coefficients, highest degree first.
_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                   0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def _horner(coeffs, w):
    p = ops.add(ops.multiply(w, coeffs[0]), coeffs[1])
    for c in coeffs[2:]:
        p = ops.add(ops.multiply(p, w), c)
    return p


def erfinv(x):
    """Inverse error function on (-1, 1) from existing primitives (log, sqrt, select,
    multiply-add); absolute error below 1e-6 of the exact inverse. Both branches are
    evaluated and selected, which is safe: ``w = -log(1 - x²) >= 0`` everywhere."""
    w = ops.negative(ops.log(ops.multiply(ops.subtract(1.0, x), ops.add(x, 1.0))))
    central = _horner(_ERFINV_CENTRAL, ops.subtract(w, 2.5))
    tail = _horner(_ERFINV_TAIL, ops.subtract(ops.sqrt(w), 3.0))
    return ops.multiply(ops.where(ops.less(w, 5.0), central, tail), x)


def standard_normal(layer: Layer, shape, dtype, salt: int):
    """N(0, 1) samples of ``shape`` inside the active trace: one counter-based uniform per
    element, mapped through the inverse normal CDF ``sqrt(2) * erfinv(2u - 1)``.

    Why not Box–Muller: it needs ``cos``/``sin``, which are not backend primitives; the
    inverse-CDF transform is equally exact (an exact transform of a uniform, evaluated to
    float32 accuracy) and needs only primitives every backend already lowers, and one uniform
    per sample. The uniform ``u = k * 2**-24`` (k < 2**24) becomes
    ``v = 2u - 1 + 2**-24``: exact in float32, symmetric about 0 and strictly inside
    (-1, 1), so samples are finite and reach about ±5.4 standard deviations.
    """
    ctx = current_trace()
    if ctx is None or ctx.seed is None or ctx.step is None:
        raise RuntimeError(f"{layer._desc}: training-mode noise needs the trace's seed and "
                           f"step values (TraceContext(seed=..., step=...))")
    u = ops.apply("random_uniform", ctx.seed, ctx.step, shape=tuple(shape), salt=salt,
                  dtype=dtype)
    v = ops.add(ops.multiply(ops.subtract(u, 0.5), 2.0), 2.0 ** -24)
    return ops.multiply(erfinv(v), math.sqrt(2.0))


def _salt(layer: Layer, seed) -> int:
    # As Dropout: a per-layer stream, stable across processes, changed by ``seed=``.
    return stable_hash31(layer.name if seed is None else f"{layer.name}:{int(seed)}")


# --------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------


class Permute(Layer):
    """Keras ``Permute(dims)``: permute the non-batch axes; ``dims`` is 1-based, e.g.
    ``(2, 1)`` swaps the two axes of a ``(batch, a, b)`` input."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"{self._desc}: invalid permutation dims={tuple(dims)}; the "
                             f"indices must be consecutive and start from 1")
        self.input_spec = InputSpec(ndim=len(self.dims) + 1)

    def call(self, inputs):
        return ops.transpose(inputs, (0,) + self.dims)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


class RepeatVector(Layer):
    """Keras ``RepeatVector(n)``: ``(batch, features)`` -> ``(batch, n, features)``."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        try:
            n = operator.index(n)
        except (TypeError, OverflowError):
            raise TypeError(f"{self._desc}: expected an integer value for n, got "
                            f"{type(n).__name__}") from None
        self.n = n
        self.input_spec = InputSpec(ndim=2, rank_hint="(batch, features)")

    def call(self, inputs):
        b, f = inputs.shape
        return ops.broadcast_to(ops.reshape(inputs, (b, 1, f)), (b, self.n, f))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        return {**super().get_config(), "n": self.n}


# --------------------------------------------------------------------------------------
# Noise and dropout variants (active in training only)
# --------------------------------------------------------------------------------------


class GaussianNoise(Layer):
    """Keras ``GaussianNoise(stddev, seed=None)``: in training, ``x + stddev * N(0, 1)``;
    the identity in inference. Keras 3 requires ``0 <= stddev <= 1``."""

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= stddev <= 1:
            raise ValueError(f"{self._desc}: stddev must be a float between 0 and 1, got "
                             f"stddev={stddev}")
        self.stddev = stddev
        self.seed = seed
        self._salt = _salt(self, seed)
        self.supports_masking = True
        self.built = True

    def call(self, inputs, training=False):
        if training and self.stddev > 0:
            z = standard_normal(self, inputs.shape, ops.dtype_of(inputs), self._salt)
            return ops.add(inputs, ops.multiply(z, float(self.stddev)))
        return inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(Layer):
    """Keras ``GaussianDropout(rate, seed=None)``: in training, multiply by
    ``1 + sqrt(rate / (1 - rate)) * N(0, 1)``; the identity in inference."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate <= 1:
            raise ValueError(f"{self._desc}: rate must be a float between 0 and 1, got "
                             f"rate={rate}")
        self.rate = rate
        self.seed = seed
        self._salt = _salt(self, seed)
        self.supports_masking = True
        self.built = True

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            if self.rate >= 1:
                raise ValueError(f"{self._desc}: rate=1 gives infinite noise "
                                 f"(stddev sqrt(rate / (1 - rate)))")
            stddev = math.sqrt(self.rate / (1.0 - self.rate))
            z = standard_normal(self, inputs.shape, ops.dtype_of(inputs), self._salt)
            return ops.multiply(inputs, ops.add(ops.multiply(z, stddev), 1.0))
        return inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def _data_format(value, desc):
    df = "channels_last" if value is None else str(value).lower()
    if df not in ("channels_last", "channels_first"):
        raise ValueError(f"{desc}: data_format must be 'channels_last' or 'channels_first', "
                         f"got {value!r}")
    return df


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one keep/drop draw per (sample, channel), broadcast
    over the other axes (``Dropout`` with a noise shape of 1 there)."""

    _ndim = 3

    def __init__(self, rate, data_format=None, seed=None, name=None, dtype=None, **kwargs):
        kwargs.pop("noise_shape", None)          # Keras 2 configs carry it; it is implied
        super().__init__(rate, seed=seed, name=name, dtype=dtype, **kwargs)
        self.data_format = _data_format(data_format, self._desc)
        spatial = (1,) * (self._ndim - 2)
        self.noise_shape = ((None,) + spatial + (None,) if self.data_format == "channels_last"
                            else (None, None) + spatial)
        self.input_spec = InputSpec(ndim=self._ndim)

    def get_config(self):
        # Keras' exact keys (its __init__ takes no others, so a Keras reader needs this).
        return {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self.dtype,
                "data_format": self.data_format}


class SpatialDropout1D(_SpatialDropout):
    """Keras ``SpatialDropout1D(rate, seed=None)`` on ``(batch, steps, channels)``."""

    _ndim = 3

    def __init__(self, rate, seed=None, name=None, dtype=None, **kwargs):
        kwargs.pop("data_format", None)
        super().__init__(rate, None, seed=seed, name=name, dtype=dtype, **kwargs)

    def get_config(self):
        cfg = super().get_config()
        del cfg["data_format"]
        return cfg


class SpatialDropout2D(_SpatialDropout):
    """Keras ``SpatialDropout2D(rate, data_format=None, seed=None)``."""

    _ndim = 4


class SpatialDropout3D(_SpatialDropout):
    """Keras ``SpatialDropout3D(rate, data_format=None, seed=None)``."""

    _ndim = 5


class ActivityRegularization(Layer):
    """Keras ``ActivityRegularization(l1=0.0, l2=0.0)``: the identity, adding
    ``l1 * sum(|x|) + l2 * sum(x²)`` of its output to the loss (the raw sum, as Keras 3:
    no division by the batch size)."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        from graphc.frontend.regularizers import L1L2
        kwargs.pop("activity_regularizer", None)
        super().__init__(activity_regularizer=L1L2(l1=l1, l2=l2), **kwargs)
        self.supports_masking = True
        self.l1 = l1
        self.l2 = l2
        self.built = True

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}


# --------------------------------------------------------------------------------------
# Dot
# --------------------------------------------------------------------------------------


def _l2_normalize(x, axis):
    # Keras' ops.normalize: x * min(rsqrt(sum(x²)), 1/eps), eps = 1e-7; written as
    # 1 / sqrt(max(sum, eps²)) so the gradient stays finite for an all-zero vector.
    s = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return ops.multiply(x, ops.divide(1.0, ops.sqrt(ops.maximum(s, 1e-14))))


def batch_dot(x, y, axes):
    """Keras' ``batch_dot`` for rank >= 2 inputs and non-negative ``axes`` (a pair): move
    the contracted axes next to each other, flatten to rank 3, one batched matmul, restore
    the remaining axes; a rank-1 result becomes ``(batch, 1)``."""
    a0, a1 = axes
    xn, yn = len(x.shape), len(y.shape)
    orig_xn, orig_yn = xn, yn
    if xn == 2:
        x = ops.expand_dims(x, 1)
        a0 += 1
        xn += 1
    if yn == 2:
        y = ops.expand_dims(y, 2)
        yn += 1
    if a0 != xn - 1:
        pattern = list(range(xn))
        for i in range(a0, xn - 1):
            pattern[i] = pattern[i + 1]
        pattern[-1] = a0
        x = ops.transpose(x, pattern)
    if a1 != 1:
        pattern = list(range(yn))
        for i in range(a1, 1, -1):
            pattern[i] = pattern[i - 1]
        pattern[1] = a1
        y = ops.transpose(y, pattern)
    x_mid = y_trail = None
    if xn > 3:
        x_mid = tuple(x.shape[1:-1])
        x = ops.reshape(x, (x.shape[0], -1, x.shape[-1]))
    if yn > 3:
        y_trail = tuple(y.shape[2:])
        y = ops.reshape(y, (y.shape[0], y.shape[1], -1))
    out = ops.matmul(x, y)
    shape = tuple(out.shape)
    if x_mid is not None:
        shape = shape[:1] + x_mid + shape[-1:]
    if y_trail is not None:
        shape = shape[:-1] + y_trail
    out = ops.reshape(out, shape)
    if orig_xn == 2:
        out = ops.squeeze(out, 1)
    elif orig_yn == 2:
        out = ops.squeeze(out, -1)
    return out


class Dot(Layer):
    """Keras ``Dot(axes, normalize=False)``: per-sample dot product of two inputs along
    ``axes`` (an int for both, or a pair; never the batch axis). ``normalize=True``
    L2-normalizes both along those axes first, giving the cosine similarity."""

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axes, int):
            if not isinstance(axes, (list, tuple)):
                raise TypeError(f"{self._desc}: axes must be an int or a list of two ints, "
                                f"got {axes!r}")
            if len(axes) != 2 or not all(isinstance(a, int) for a in axes):
                raise ValueError(f"{self._desc}: axes must hold two integers, got {axes!r}")
            axes = list(axes)
        self.axes = axes
        self.normalize = bool(normalize)
        self.supports_masking = True

    def _resolved_axes(self, shapes):
        r1, r2 = len(shapes[0]), len(shapes[1])
        pair = [self.axes, self.axes] if isinstance(self.axes, int) else list(self.axes)
        out = []
        for a, r in zip(pair, (r1, r2)):
            if not -r <= a < r:
                raise ShapeError(f"{self._desc}: axis {a} is out of range for inputs of "
                                 f"shapes {shape_str(shapes[0])}, {shape_str(shapes[1])}")
            out.append(a % r)
        if 0 in out:
            raise ShapeError(f"{self._desc}: cannot take the dot product over the batch "
                             f"axis (axes={self.axes!r})")
        return out

    def _check_pair(self, shapes):
        if not isinstance(shapes, (list, tuple)) or len(shapes) != 2 or not isinstance(
                shapes[0], (list, tuple)):
            raise ValueError(f"{self._desc}: a Dot layer must be called on a list of 2 "
                             f"inputs")
        for s in shapes:
            if len(s) < 2:
                raise ShapeError(f"{self._desc}: inputs must have rank >= 2, got shapes "
                                 f"{shape_str(shapes[0])}, {shape_str(shapes[1])}")
        a0, a1 = self._resolved_axes(shapes)
        d0, d1 = shapes[0][a0], shapes[1][a1]
        if d0 is not None and d1 is not None and d0 != d1:
            raise ShapeError(f"{self._desc}: incompatible input shapes: axis values {d0} (at "
                             f"axis {a0}) != {d1} (at axis {a1}); full input shapes "
                             f"{shape_str(shapes[0])}, {shape_str(shapes[1])}")
        return a0, a1

    def build(self, input_shape):
        self._check_pair(input_shape)
        self.built = True

    def call(self, inputs):
        if len(inputs) != 2:
            raise ValueError(f"{self._desc}: a Dot layer must be called on exactly 2 inputs, "
                             f"got {len(inputs)}")
        x1, x2 = inputs
        a0, a1 = self._check_pair([tuple(x1.shape), tuple(x2.shape)])
        if self.normalize:
            x1 = _l2_normalize(x1, a0)
            x2 = _l2_normalize(x2, a1)
        return batch_dot(x1, x2, (a0, a1))

    def compute_output_shape(self, input_shape):
        a0, a1 = self._check_pair(input_shape)
        s1, s2 = list(input_shape[0]), list(input_shape[1])
        s1.pop(a0)
        s2.pop(a1)
        s2.pop(0)
        out = s1 + s2
        if len(out) == 1:
            out.append(1)
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def dot(inputs, axes=-1, **kwargs):
    """Functional form of ``Dot``: ``dot([a, b], axes=1)``."""
    return Dot(axes=axes, **kwargs)(inputs)
