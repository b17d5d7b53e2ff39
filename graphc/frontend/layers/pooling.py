"""Pooling over channels-last inputs: ``MaxPooling1D/2D``/``AveragePooling1D/2D`` (window
ops with Keras' 'same'/'valid' padding resolved to explicit pads at call time; 'same'
averages count only real pixels, as Keras/TF) and the global poolings (reductions over the
spatial axes). 1-D pooling runs the 2-D window op on an ``(N, 1, W, C)`` view with a
``(1, p)`` window, so backends need only the 2-D kernels."""
from __future__ import annotations

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.keras_tensor import shape_str
from graphc.frontend.layers.base import (InputSpec, Layer, normalize_data_format,
                                         normalize_padding, normalize_tuple)
from graphc.frontend.layers.conv import _NHWC, _NWC, conv_padding


class _Pooling(Layer):
    _op = ""
    rank = 2

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        d = self._desc
        r = self.rank
        self.pool_size = normalize_tuple(pool_size, r, "pool_size", d)
        self.strides = normalize_tuple(strides if strides is not None else self.pool_size, r,
                                       "strides", d)
        if min(self.pool_size + self.strides) < 1:
            raise ValueError(f"{d}: pool_size and strides must be >= 1")
        self.padding = normalize_padding(padding, d)
        self.data_format = normalize_data_format(data_format, d)
        self.input_spec = InputSpec(ndim=r + 2, rank_hint=_NWC if r == 1 else _NHWC)

    def call(self, inputs):
        x = inputs
        if self.rank == 1:
            x = ops.reshape(x, (x.shape[0], 1) + tuple(x.shape[1:]))
        pre = (1,) * (2 - self.rank)
        pool, strides = pre + self.pool_size, pre + self.strides
        in_hw = tuple(x.shape[1:3])
        if self.padding == "valid" and any(n < k for n, k in zip(in_hw, pool)):
            raise ShapeError(f"{self._desc}: input of spatial size "
                             f"{tuple(inputs.shape[1:1 + self.rank])} is smaller than "
                             f"the pool window {self.pool_size} (input shape "
                             f"{shape_str((None,) + tuple(inputs.shape[1:]))})")
        pads = conv_padding(self.padding, in_hw, pool, strides)
        y = ops.apply(self._op, x, pool=pool, strides=strides, padding=pads)
        if self.rank == 1:
            y = ops.reshape(y, (y.shape[0],) + tuple(y.shape[2:]))
        return y

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "padding": self.padding, "strides": list(self.strides),
                "data_format": self.data_format}


class _Pooling1D(_Pooling):
    rank = 1

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(pool_size=pool_size, strides=strides, padding=padding,
                         data_format=data_format, **kwargs)


class MaxPooling1D(_Pooling1D):
    """Keras ``MaxPooling1D(pool_size=2, strides=None, padding='valid')`` over
    ``(batch, steps, channels)``."""

    _op = "max_pool2d"


class AveragePooling1D(_Pooling1D):
    """Keras ``AveragePooling1D(pool_size=2, strides=None, padding='valid')`` over
    ``(batch, steps, channels)``."""

    _op = "avg_pool2d"


class MaxPooling2D(_Pooling):
    _op = "max_pool2d"


class AveragePooling2D(_Pooling):
    _op = "avg_pool2d"


MaxPool1D = MaxPooling1D
AvgPool1D = AveragePooling1D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPooling(Layer):
    rank = 2

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format, self._desc)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=self.rank + 2,
                                    rank_hint=_NWC if self.rank == 1 else _NHWC)

    @property
    def _axes(self):
        return tuple(range(1, self.rank + 1))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over the steps axis: ``(batch, steps, C)`` -> ``(batch, C)`` (masks are not
    supported: every step counts)."""

    rank = 1

    def call(self, inputs):
        return ops.mean(inputs, axis=self._axes, keepdims=self.keepdims)


class GlobalMaxPooling1D(_GlobalPooling):
    rank = 1

    def call(self, inputs):
        return ops.max(inputs, axis=self._axes, keepdims=self.keepdims)


class GlobalAveragePooling2D(_GlobalPooling):
    def call(self, inputs):
        return ops.mean(inputs, axis=self._axes, keepdims=self.keepdims)


class GlobalMaxPooling2D(_GlobalPooling):
    def call(self, inputs):
        return ops.max(inputs, axis=self._axes, keepdims=self.keepdims)


GlobalAvgPool1D = GlobalAveragePooling1D
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
