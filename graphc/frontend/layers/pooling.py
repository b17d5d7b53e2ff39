"""2-D pooling over NHWC inputs: ``MaxPooling2D``/``AveragePooling2D`` (window ops with
Keras' 'same'/'valid' padding resolved to explicit pads at call time; 'same' averages count
only real pixels, as Keras/TF) and the global poolings (reductions over height and width)."""
from __future__ import annotations

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.keras_tensor import shape_str
from graphc.frontend.layers.base import (InputSpec, Layer, normalize_data_format,
                                         normalize_padding, normalize_tuple)
from graphc.frontend.layers.conv import _NHWC, conv_padding


class _Pooling2D(Layer):
    _op = ""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        d = self._desc
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size", d)
        self.strides = normalize_tuple(strides if strides is not None else self.pool_size, 2,
                                       "strides", d)
        if min(self.pool_size + self.strides) < 1:
            raise ValueError(f"{d}: pool_size and strides must be >= 1")
        self.padding = normalize_padding(padding, d)
        self.data_format = normalize_data_format(data_format, d)
        self.input_spec = InputSpec(ndim=4, rank_hint=_NHWC)

    def call(self, inputs):
        in_hw = tuple(inputs.shape[1:3])
        if self.padding == "valid" and any(n < k for n, k in zip(in_hw, self.pool_size)):
            raise ShapeError(f"{self._desc}: input of spatial size {in_hw} is smaller than "
                             f"the pool window {self.pool_size} (input shape "
                             f"{shape_str((None,) + tuple(inputs.shape[1:]))})")
        pads = conv_padding(self.padding, in_hw, self.pool_size, self.strides)
        return ops.apply(self._op, inputs, pool=self.pool_size, strides=self.strides,
                         padding=pads)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "padding": self.padding, "strides": list(self.strides),
                "data_format": self.data_format}


class MaxPooling2D(_Pooling2D):
    _op = "max_pool2d"


class AveragePooling2D(_Pooling2D):
    _op = "avg_pool2d"


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D


class _GlobalPooling2D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format, self._desc)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=4, rank_hint=_NHWC)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    def call(self, inputs):
        return ops.mean(inputs, axis=(1, 2), keepdims=self.keepdims)


class GlobalMaxPooling2D(_GlobalPooling2D):
    def call(self, inputs):
        return ops.max(inputs, axis=(1, 2), keepdims=self.keepdims)


GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
