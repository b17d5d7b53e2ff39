"""Reshaping layers (batch dimension untouched): ``Flatten``, ``Reshape``, and the spatial
ones ``UpSampling1D/2D``, ``ZeroPadding1D/2D``, ``Cropping1D/2D`` (channels-last)."""
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


# ----------------------------------------------------------------------------- spatial
# UpSampling, ZeroPadding and Cropping are pure data movement on channels-last inputs:
# reshape/broadcast_to, pad and slice, whose VJPs the registry already has.

_NWC = "(batch, steps, channels)"
_NHWC = "(batch, height, width, channels)"


def _data_format(value, layer):
    from graphc.frontend.layers.base import normalize_data_format
    return normalize_data_format(value, layer)


def _int_pair(value, name, layer, lo):
    """An int ``p`` -> ``(p, p)``; a pair of ints as is; each must be >= ``lo``."""
    try:
        pair = ((int(value),) * 2 if isinstance(value, (int, np.integer))
                else tuple(int(v) for v in value))
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < lo:
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints >= {lo}, "
                         f"got {value!r}")
    return pair


def _pairs_2d(value, name, layer):
    """Keras' 2-D padding/cropping argument: ``p``, ``(sym_h, sym_w)`` or
    ``((top, bottom), (left, right))`` -> the last form."""
    if isinstance(value, (int, np.integer)):
        p = _int_pair(value, name, layer, 0)[0]
        return ((p, p), (p, p))
    try:
        value = list(value)
    except TypeError:
        value = [value]
    if len(value) != 2:
        raise ValueError(f"{layer}: {name} must be an int, a pair of ints or a pair of "
                         f"pairs ((top, bottom), (left, right)), got {value!r}")
    return tuple(_int_pair(v, name, layer, 0) for v in value)


def _interp_matrix(n_in: int, scale: int) -> np.ndarray:
    """``(n_in*scale, n_in)`` bilinear weights with half-pixel centres (what Keras'
    ``ops.image.resize`` does when upsampling): output ``o`` samples input position
    ``(o + 0.5) / scale - 0.5``, clamped at the edges."""
    n_out = n_in * scale
    src = np.clip((np.arange(n_out) + 0.5) / scale - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), np.float64)
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


class UpSampling1D(Layer):
    """Keras ``UpSampling1D(size=2)``: each step repeated ``size`` times."""

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        if self.size < 1:
            raise ValueError(f"{self._desc}: size must be a positive integer, got {size!r}")
        self.input_spec = InputSpec(ndim=3, rank_hint=_NWC)

    def call(self, inputs):
        n, t, c = inputs.shape
        x = ops.reshape(inputs, (n, t, 1, c))
        x = ops.broadcast_to(x, (n, t, self.size, c))
        return ops.reshape(x, (n, t * self.size, c))

    def get_config(self):
        return {**super().get_config(), "size": self.size}


class UpSampling2D(Layer):
    """Keras ``UpSampling2D(size=(2, 2), interpolation='nearest'|'bilinear')``.

    'nearest' repeats rows and columns (reshape, broadcast, reshape: no arithmetic);
    'bilinear' multiplies by two constant interpolation matrices (half-pixel centres,
    edge-clamped — Keras' resize), one per spatial axis, so it is two small matmuls."""

    _INTERPOLATIONS = ("nearest", "bilinear")

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        d = self._desc
        self.size = _int_pair(size, "size", d, 1)
        self.data_format = _data_format(data_format, d)
        self.interpolation = str(interpolation).lower()
        if self.interpolation not in self._INTERPOLATIONS:
            if self.interpolation in ("bicubic", "lanczos3", "lanczos5", "area", "gaussian",
                                      "mitchellcubic", "lanczos"):
                raise NotImplementedError(f"{d}: interpolation={interpolation!r} is not "
                                          f"supported by graphc; use 'nearest' or 'bilinear'")
            raise ValueError(f"{d}: interpolation must be 'nearest' or 'bilinear', got "
                             f"{interpolation!r}")
        self.input_spec = InputSpec(ndim=4, rank_hint=_NHWC)

    def call(self, inputs):
        n, h, w, c = inputs.shape
        sh, sw = self.size
        if self.interpolation == "nearest":
            x = ops.reshape(inputs, (n, h, 1, w, 1, c))
            x = ops.broadcast_to(x, (n, h, sh, w, sw, c))
            return ops.reshape(x, (n, h * sh, w * sw, c))
        dt = ops.dtype_of(inputs).np
        mh = _interp_matrix(h, sh).astype(dt)
        mw = _interp_matrix(w, sw).astype(dt)
        # (H', H) @ (N, H, W*C) broadcasts over the batch; then (W', W) @ (N*H', W, C).
        x = ops.matmul(mh, ops.reshape(inputs, (n, h, w * c)))
        x = ops.matmul(mw, ops.reshape(x, (n * h * sh, w, c)))
        return ops.reshape(x, (n, h * sh, w * sw, c))

    def get_config(self):
        return {**super().get_config(), "size": list(self.size),
                "data_format": self.data_format, "interpolation": self.interpolation}


class ZeroPadding1D(Layer):
    """Keras ``ZeroPadding1D(padding=1)``: ``p`` or ``(left, right)`` zero steps."""

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _int_pair(padding, "padding", self._desc, 0)
        self.data_format = _data_format(data_format, self._desc)
        self.input_spec = InputSpec(ndim=3, rank_hint=_NWC)

    def call(self, inputs):
        if self.padding == (0, 0):
            return inputs
        return ops.apply("pad", inputs, pads=((0, 0), self.padding, (0, 0)), value=0.0)

    def get_config(self):
        return {**super().get_config(), "padding": list(self.padding),
                "data_format": self.data_format}


class ZeroPadding2D(Layer):
    """Keras ``ZeroPadding2D(padding=(1, 1))``: ``p``, ``(sym_h, sym_w)`` or
    ``((top, bottom), (left, right))`` zero rows/columns."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs_2d(padding, "padding", self._desc)
        self.data_format = _data_format(data_format, self._desc)
        self.input_spec = InputSpec(ndim=4, rank_hint=_NHWC)

    def call(self, inputs):
        if self.padding == ((0, 0), (0, 0)):
            return inputs
        return ops.apply("pad", inputs, pads=((0, 0),) + self.padding + ((0, 0),),
                         value=0.0)

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding],
                "data_format": self.data_format}


def _crop(layer, inputs, crops):
    """Slice ``crops`` ((before, after) per spatial axis) off ``inputs``, or raise naming
    the layer when nothing would be left."""
    spatial = tuple(inputs.shape[1:1 + len(crops)])
    if any(a + b >= n for n, (a, b) in zip(spatial, crops)):
        raise ShapeError(f"{layer._desc}: cropping {tuple(crops)} leaves nothing of input "
                         f"spatial size {spatial} (input shape "
                         f"{shape_str((None,) + tuple(inputs.shape[1:]))})")
    if all(c == (0, 0) for c in crops):
        return inputs
    begin = (0,) + tuple(a for a, _ in crops) + (0,)
    end = ((inputs.shape[0],) + tuple(n - b for n, (_, b) in zip(spatial, crops))
           + (inputs.shape[-1],))
    return ops.apply("slice", inputs, begin=begin, end=end, strides=None)


class Cropping1D(Layer):
    """Keras ``Cropping1D(cropping=(1, 1))``: drop steps at the start and end."""

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = _int_pair(cropping, "cropping", self._desc, 0)
        self.input_spec = InputSpec(ndim=3, rank_hint=_NWC)

    def build(self, input_shape):
        t = input_shape[1]
        if t is not None and sum(self.cropping) >= t:
            raise ShapeError(f"{self._desc}: cropping {self.cropping} leaves nothing of "
                             f"{t} steps (input shape {shape_str(input_shape)})")
        self.built = True

    def call(self, inputs):
        return _crop(self, inputs, (self.cropping,))

    def get_config(self):
        return {**super().get_config(), "cropping": list(self.cropping)}


class Cropping2D(Layer):
    """Keras ``Cropping2D(cropping=((0, 0), (0, 0)))``: ``c``, ``(sym_h, sym_w)`` or
    ``((top, bottom), (left, right))`` rows/columns dropped."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs_2d(cropping, "cropping", self._desc)
        self.data_format = _data_format(data_format, self._desc)
        self.input_spec = InputSpec(ndim=4, rank_hint=_NHWC)

    def build(self, input_shape):
        hw = tuple(input_shape[1:3])
        if any(n is not None and a + b >= n for n, (a, b) in zip(hw, self.cropping)):
            raise ShapeError(f"{self._desc}: cropping {self.cropping} leaves nothing of "
                             f"input spatial size {hw} (input shape "
                             f"{shape_str(input_shape)})")
        self.built = True

    def call(self, inputs):
        return _crop(self, inputs, self.cropping)

    def get_config(self):
        return {**super().get_config(), "cropping": [list(c) for c in self.cropping],
                "data_format": self.data_format}
