"""``Conv2D`` over NHWC inputs (Keras' default ``channels_last``), kernel
``(kh, kw, in_channels / groups, filters)`` as Keras lays it out. Padding is resolved at
call time from the concrete input size (Keras/TF 'same' rule), so inputs with unknown
spatial size at definition time work."""
from __future__ import annotations

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.keras_tensor import shape_str
from graphc.frontend.layers.base import (InputSpec, Layer, get_activation, get_constraint,
                                         get_initializer, get_regularizer, normalize_data_format,
                                         normalize_padding, normalize_tuple,
                                         serialize_activation, serialize_object)

_NHWC = "(batch, height, width, channels)"


def conv_padding(kind, in_hw, kernel_hw, strides, dilation=(1, 1)):
    from graphc.ir.ops.nn import conv_padding as _cp
    return _cp(kind, in_hw, kernel_hw, strides, dilation)


class Conv2D(Layer):
    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), groups=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        d = self._desc
        self.filters = int(filters)
        if self.filters <= 0:
            raise ValueError(f"{d}: filters must be a positive integer, got {filters!r}")
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", d)
        self.strides = normalize_tuple(strides, 2, "strides", d)
        self.padding = normalize_padding(padding, d)
        self.data_format = normalize_data_format(data_format, d)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", d)
        self.groups = int(groups)
        if min(self.kernel_size + self.strides + self.dilation_rate) < 1 or self.groups < 1:
            raise ValueError(f"{d}: kernel_size, strides, dilation_rate and groups must be "
                             f">= 1")
        if self.filters % self.groups:
            raise ValueError(f"{d}: filters ({self.filters}) must be divisible by groups "
                             f"({self.groups})")
        self.activation = get_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self.bias_constraint = get_constraint(bias_constraint)
        self.input_spec = InputSpec(ndim=4, rank_hint=_NHWC)

    def build(self, input_shape):
        cin = input_shape[-1]
        if cin is None:
            raise ValueError(f"{self._desc}: the channel dimension of the inputs must be "
                             f"defined, got input shape {shape_str(input_shape)}")
        if cin % self.groups:
            raise ValueError(f"{self._desc}: input channels ({cin}) must be divisible by "
                             f"groups ({self.groups})")
        kshape = self.kernel_size + (cin // self.groups, self.filters)
        self.kernel = self.add_weight(name="kernel", shape=kshape,
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                    initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.input_spec = InputSpec(ndim=4, axes={-1: cin}, rank_hint=_NHWC)
        self.built = True

    def call(self, inputs):
        in_hw = tuple(inputs.shape[1:3])
        pads = conv_padding(self.padding, in_hw, self.kernel_size, self.strides,
                            self.dilation_rate)
        eff = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate)]
        if any(n + p[0] + p[1] < e for n, p, e in zip(in_hw, pads, eff)):
            raise ShapeError(f"{self._desc}: input of spatial size {in_hw} is smaller than "
                             f"the (dilated) kernel {tuple(eff)} with padding "
                             f"'{self.padding}' (input shape "
                             f"{shape_str((None,) + tuple(inputs.shape[1:]))})")
        x = ops.apply("conv2d", inputs, self.kernel, strides=self.strides, padding=pads,
                      dilation=self.dilation_rate, groups=self.groups)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return self.activation(x)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate), "groups": self.groups,
                "activation": serialize_activation(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": serialize_object(self.kernel_initializer, "initializers"),
                "bias_initializer": serialize_object(self.bias_initializer, "initializers"),
                "kernel_regularizer": serialize_object(self.kernel_regularizer, "regularizers"),
                "bias_regularizer": serialize_object(self.bias_regularizer, "regularizers"),
                "activity_regularizer": serialize_object(self.activity_regularizer,
                                                         "regularizers"),
                "kernel_constraint": serialize_object(self.kernel_constraint, "constraints"),
                "bias_constraint": serialize_object(self.bias_constraint, "constraints")}


Convolution2D = Conv2D
