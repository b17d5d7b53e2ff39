"""Convolution layers over channels-last inputs (Keras' default), all lowered to the one
``conv2d`` primitive family: ``Conv1D``/``Conv2D`` (strides, dilation, groups; Conv1D also
'causal'), ``DepthwiseConv1D/2D`` (``groups = in_channels``), ``SeparableConv1D/2D``
(depthwise then a 1x1 conv) and ``Conv1DTranspose``/``Conv2DTranspose``
(``conv2d_backprop_input``, the exact adjoint of a conv).

Kernels have Keras' layouts: conv ``(*k, in/groups, filters)``, depthwise
``(*k, in, depth_multiplier)``, pointwise ``(*1, in*depth_multiplier, filters)``, transpose
``(*k, filters, in)``. 1-D layers run as 2-D ones on an ``(N, 1, W, C)`` view (a reshape,
free) with a ``(1, k)`` window, so backends need only the 2-D kernels. Padding is resolved
at call time from the concrete input size (Keras/TF rules), so inputs with unknown spatial
size at definition time work.
"""
from __future__ import annotations

from graphc.errors import ShapeError
from graphc.frontend import ops
from graphc.frontend.keras_tensor import shape_str
from graphc.frontend.layers.base import (InputSpec, Layer, get_activation, get_constraint,
                                         get_initializer, get_regularizer, normalize_data_format,
                                         normalize_padding, normalize_tuple,
                                         serialize_activation, serialize_object)

_NHWC = "(batch, height, width, channels)"
_NWC = "(batch, steps, channels)"


def conv_padding(kind, in_hw, kernel_hw, strides, dilation=(1, 1)):
    from graphc.ir.ops.nn import conv_padding as _cp
    return _cp(kind, in_hw, kernel_hw, strides, dilation)


def conv_transpose_output_length(n, k, s, padding, output_padding=None, d=1):
    """Keras' output length of a transposed conv (``compute_conv_transpose_output_shape``):
    'valid': ``(n-1)*s + k_eff + output_padding`` (default ``max(k_eff, s) - k_eff``);
    'same': ``n*s`` without output_padding, else ``(n-1)*s + k_eff % 2 + output_padding``;
    ``k_eff = (k-1)*d + 1``."""
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        op = max(k_eff, s) - k_eff if output_padding is None else output_padding
        return (n - 1) * s + k_eff + op
    if output_padding is None:
        return n * s
    return (n - 1) * s + k_eff % 2 + output_padding


def conv_transpose_geometry(n, k, s, padding, output_padding=None, d=1):
    """``(out_len, (pad_before, pad_after), zeros_after)`` for one axis of a transposed conv
    computed as ``conv2d_backprop_input``: the forward conv that it is the adjoint of maps
    ``out_len`` (padded by ``pad_*``) to ``n``; ``zeros_after`` trailing outputs that no input
    reaches are appended with a pad op.

    Keras places the output window by padding the stride-dilated input with
    ``(left, right)`` (its JAX rule, ``_convert_conv_transpose_padding_args_from_keras_to_jax``,
    which agrees with TF's); in the adjoint view that is forward padding
    ``k_eff - 1 - left`` before and ``k_eff - 1 - right`` after.
    """
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        op = max(k_eff, s) - k_eff if output_padding is None else output_padding
        left, right = k_eff - 1, k_eff - 1 + op
    else:
        total = (s + k_eff - 2 if output_padding is None
                 else k_eff + k_eff % 2 - 2 + output_padding)
        left = min(total // 2 + total % 2, k_eff - 1)
        right = total - left
    out = (n - 1) * s + left + right - k_eff + 2
    before, after = k_eff - 1 - left, k_eff - 1 - right
    zeros = 0
    if after < 0:
        # Outputs past the last kernel tap: conv2d's floor division absorbs fewer than s of
        # them (they come out as zeros of backprop_input); more need an explicit pad.
        if -after >= s:
            zeros = -after
        after = 0
    return out, (before, after), zeros


def _normalize_conv_padding(value, layer, allow_causal):
    if allow_causal and str(value).lower() == "causal":
        return "causal"
    try:
        return normalize_padding(value, layer)
    except ValueError:
        if allow_causal:
            raise ValueError(f"{layer}: padding must be 'valid', 'same' or 'causal', got "
                             f"{value!r}") from None
        raise


class _ConvBase(Layer):
    """Geometry shared by every conv layer: a rank-1 layer works on a rank-2 view."""

    rank = 2

    def _init_geometry(self, kernel_size, strides, padding, data_format, dilation_rate,
                       allow_causal=False):
        d = self._desc
        r = self.rank
        self.kernel_size = normalize_tuple(kernel_size, r, "kernel_size", d)
        self.strides = normalize_tuple(strides, r, "strides", d)
        self.padding = _normalize_conv_padding(padding, d, allow_causal)
        self.data_format = normalize_data_format(data_format, d)
        self.dilation_rate = normalize_tuple(dilation_rate, r, "dilation_rate", d)
        if min(self.kernel_size + self.strides + self.dilation_rate) < 1:
            raise ValueError(f"{d}: kernel_size, strides and dilation_rate must be >= 1, got "
                             f"{self.kernel_size}, {self.strides}, {self.dilation_rate}")
        self.input_spec = InputSpec(ndim=r + 2, rank_hint=self._hint)

    @property
    def _hint(self):
        return _NWC if self.rank == 1 else _NHWC

    def _spec_with_channels(self, cin):
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: cin}, rank_hint=self._hint)

    def _channels(self, input_shape):
        cin = input_shape[-1]
        if cin is None:
            raise ValueError(f"{self._desc}: the channel dimension of the inputs must be "
                             f"defined, got input shape {shape_str(input_shape)}")
        return int(cin)

    # rank-1 <-> rank-2 views
    def _pair(self, t, fill=1):
        return (fill,) + tuple(t) if self.rank == 1 else tuple(t)

    def _to2d(self, x):
        if self.rank == 1:
            return ops.reshape(x, (x.shape[0], 1) + tuple(x.shape[1:]))
        return x

    def _from2d(self, y):
        if self.rank == 1:
            return ops.reshape(y, (y.shape[0],) + tuple(y.shape[2:]))
        return y

    def _kernel2d(self, k):
        return ops.reshape(k, (1,) + tuple(k.shape)) if self.rank == 1 else k

    def _in_shape_str(self, x):
        return shape_str((None,) + tuple(x.shape[1:]))

    def _conv_pads(self, x):
        """Explicit 2-D padding for a forward conv of input ``x`` (rank-2 view), after
        checking the (dilated) kernel fits."""
        in_sp = tuple(x.shape[3 - self.rank:3])
        ks, st, dl = self.kernel_size, self.strides, self.dilation_rate
        eff = tuple((k - 1) * d + 1 for k, d in zip(ks, dl))
        if self.padding == "causal":          # Conv1D: all of it before, output length ceil
            pads = ((0, 0), (eff[0] - 1, 0))
        else:
            pads = conv_padding(self.padding, self._pair(in_sp), self._pair(ks),
                                self._pair(st), self._pair(dl))
        spans = [n + p[0] + p[1] for n, p in zip(in_sp, pads[-self.rank:])]
        if any(sp < e for sp, e in zip(spans, eff)):
            raise ShapeError(f"{self._desc}: input of spatial size {in_sp} is smaller than "
                             f"the (dilated) kernel {eff} with padding '{self.padding}' "
                             f"(input shape {self._in_shape_str(x)})")
        return pads

    def _finish(self, y):
        if self.bias is not None:
            y = ops.add(y, self.bias)
        return self.activation(y)

    def _init_common(self, activation, use_bias, bias_initializer, bias_regularizer,
                     bias_constraint):
        self.activation = get_activation(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = get_initializer(bias_initializer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.bias_constraint = get_constraint(bias_constraint)
        self.bias = None

    def _add_bias(self, n):
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(n,),
                                        initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)
        else:
            self.bias = None

    def _geometry_config(self):
        return {"kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate)}

    def _tail_config(self):
        return {"activation": serialize_activation(self.activation),
                "use_bias": self.use_bias}

    def _bias_config(self):
        return {"bias_initializer": serialize_object(self.bias_initializer, "initializers"),
                "bias_regularizer": serialize_object(self.bias_regularizer, "regularizers"),
                "activity_regularizer": serialize_object(self.activity_regularizer,
                                                         "regularizers")}


def _check_filters(layer, filters):
    f = int(filters)
    if f <= 0:
        raise ValueError(f"{layer._desc}: filters must be a positive integer, got {filters!r}")
    return f


# ----------------------------------------------------------------------------- Conv


class _Conv(_ConvBase):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        d = self._desc
        self.filters = _check_filters(self, filters)
        self._init_geometry(kernel_size, strides, padding, data_format, dilation_rate,
                            allow_causal=self.rank == 1)
        self.groups = int(groups)
        if self.groups < 1:
            raise ValueError(f"{d}: groups must be >= 1, got {groups!r}")
        if self.filters % self.groups:
            raise ValueError(f"{d}: filters ({self.filters}) must be divisible by groups "
                             f"({self.groups})")
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self._init_common(activation, use_bias, bias_initializer, bias_regularizer,
                          bias_constraint)

    def build(self, input_shape):
        cin = self._channels(input_shape)
        if cin % self.groups:
            raise ValueError(f"{self._desc}: input channels ({cin}) must be divisible by "
                             f"groups ({self.groups})")
        self.kernel = self.add_weight(name="kernel",
                                      shape=self.kernel_size + (cin // self.groups,
                                                                self.filters),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self._add_bias(self.filters)
        self._spec_with_channels(cin)
        self.built = True

    def call(self, inputs):
        x = self._to2d(inputs)
        y = ops.apply("conv2d", x, self._kernel2d(self.kernel), strides=self._pair(self.strides),
                      padding=self._conv_pads(x), dilation=self._pair(self.dilation_rate),
                      groups=self.groups)
        return self._finish(self._from2d(y))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, **self._geometry_config(),
                "groups": self.groups, **self._tail_config(),
                "kernel_initializer": serialize_object(self.kernel_initializer, "initializers"),
                "kernel_regularizer": serialize_object(self.kernel_regularizer, "regularizers"),
                "kernel_constraint": serialize_object(self.kernel_constraint, "constraints"),
                **self._bias_config(),
                "bias_constraint": serialize_object(self.bias_constraint, "constraints")}


class Conv1D(_Conv):
    """Keras ``Conv1D``; input ``(batch, steps, channels)``, kernel ``(k, in/groups,
    filters)``. ``padding='causal'`` pads ``(k-1)*dilation`` steps before the sequence only,
    so output ``t`` sees inputs ``<= t``."""

    rank = 1


class Conv2D(_Conv):
    """Keras ``Conv2D``; input ``(batch, height, width, channels)``, kernel
    ``(kh, kw, in/groups, filters)``."""

    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), groups=1, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, groups=groups,
                         **kwargs)


Convolution1D = Conv1D
Convolution2D = Conv2D


# ----------------------------------------------------------------------------- Depthwise


def _check_multiplier(layer, depth_multiplier):
    m = int(depth_multiplier)
    if m <= 0:
        raise ValueError(f"{layer._desc}: depth_multiplier must be a positive integer, got "
                         f"{depth_multiplier!r}")
    return m


class _DepthwiseConv(_ConvBase):
    """Each input channel convolved with its own ``depth_multiplier`` filters: a conv2d
    with ``groups = in_channels``. Keras' kernel ``(*k, in, m)`` reshapes (row-major) to
    the grouped filter ``(*k, 1, in*m)`` whose output channel ``c*m + j`` is group ``c`` —
    the channel order Keras produces."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.depth_multiplier = _check_multiplier(self, depth_multiplier)
        self._init_geometry(kernel_size, strides, padding, data_format, dilation_rate)
        self.depthwise_initializer = get_initializer(depthwise_initializer)
        self.depthwise_regularizer = get_regularizer(depthwise_regularizer)
        self.depthwise_constraint = get_constraint(depthwise_constraint)
        self._init_common(activation, use_bias, bias_initializer, bias_regularizer,
                          bias_constraint)

    def build(self, input_shape):
        cin = self._channels(input_shape)
        self.kernel = self.add_weight(name="kernel",
                                      shape=self.kernel_size + (cin, self.depth_multiplier),
                                      initializer=self.depthwise_initializer,
                                      regularizer=self.depthwise_regularizer,
                                      constraint=self.depthwise_constraint)
        self._add_bias(cin * self.depth_multiplier)
        self._spec_with_channels(cin)
        self.built = True

    def call(self, inputs):
        return self._finish(self._from2d(_depthwise(self, self._to2d(inputs), self.kernel)))

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier,
                **self._geometry_config(), **self._tail_config(),
                "depthwise_initializer": serialize_object(self.depthwise_initializer,
                                                          "initializers"),
                **self._bias_config(),
                "depthwise_regularizer": serialize_object(self.depthwise_regularizer,
                                                          "regularizers"),
                "depthwise_constraint": serialize_object(self.depthwise_constraint,
                                                         "constraints"),
                "bias_constraint": serialize_object(self.bias_constraint, "constraints")}


def _depthwise(layer, x, kernel):
    """Grouped conv2d of the rank-2 view ``x`` with a Keras depthwise kernel."""
    cin = x.shape[-1]
    m = kernel.shape[-1]
    w = ops.reshape(kernel, layer._pair(layer.kernel_size) + (1, cin * m))
    return ops.apply("conv2d", x, w, strides=layer._pair(layer.strides),
                     padding=layer._conv_pads(x), dilation=layer._pair(layer.dilation_rate),
                     groups=cin)


class DepthwiseConv1D(_DepthwiseConv):
    """Keras ``DepthwiseConv1D``; kernel ``(k, in, depth_multiplier)``."""

    rank = 1


class DepthwiseConv2D(_DepthwiseConv):
    """Keras ``DepthwiseConv2D``; kernel ``(kh, kw, in, depth_multiplier)``, bias
    ``(in * depth_multiplier,)``."""

    rank = 2

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), **kwargs):
        super().__init__(kernel_size, strides=strides, padding=padding,
                         depth_multiplier=depth_multiplier, data_format=data_format,
                         dilation_rate=dilation_rate, **kwargs)


# ----------------------------------------------------------------------------- Separable


class _SeparableConv(_ConvBase):
    """Depthwise conv (strides, padding, dilation) then a pointwise 1x1 conv to
    ``filters``; weights ``depthwise_kernel``, ``pointwise_kernel``, ``bias``."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.filters = _check_filters(self, filters)
        self.depth_multiplier = _check_multiplier(self, depth_multiplier)
        self._init_geometry(kernel_size, strides, padding, data_format, dilation_rate)
        self.depthwise_initializer = get_initializer(depthwise_initializer)
        self.pointwise_initializer = get_initializer(pointwise_initializer)
        self.depthwise_regularizer = get_regularizer(depthwise_regularizer)
        self.pointwise_regularizer = get_regularizer(pointwise_regularizer)
        self.depthwise_constraint = get_constraint(depthwise_constraint)
        self.pointwise_constraint = get_constraint(pointwise_constraint)
        self._init_common(activation, use_bias, bias_initializer, bias_regularizer,
                          bias_constraint)

    def build(self, input_shape):
        cin = self._channels(input_shape)
        m = self.depth_multiplier
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel", shape=self.kernel_size + (cin, m),
            initializer=self.depthwise_initializer, regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint)
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel", shape=(1,) * self.rank + (cin * m, self.filters),
            initializer=self.pointwise_initializer, regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint)
        self._add_bias(self.filters)
        self._spec_with_channels(cin)
        self.built = True

    def call(self, inputs):
        h = _depthwise(self, self._to2d(inputs), self.depthwise_kernel)
        y = ops.apply("conv2d", h, self._kernel2d(self.pointwise_kernel))
        return self._finish(self._from2d(y))

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier,
                "filters": self.filters, **self._geometry_config(), **self._tail_config(),
                "depthwise_initializer": serialize_object(self.depthwise_initializer,
                                                          "initializers"),
                "pointwise_initializer": serialize_object(self.pointwise_initializer,
                                                          "initializers"),
                **self._bias_config(),
                "depthwise_regularizer": serialize_object(self.depthwise_regularizer,
                                                          "regularizers"),
                "pointwise_regularizer": serialize_object(self.pointwise_regularizer,
                                                          "regularizers"),
                "depthwise_constraint": serialize_object(self.depthwise_constraint,
                                                         "constraints"),
                "pointwise_constraint": serialize_object(self.pointwise_constraint,
                                                         "constraints"),
                "bias_constraint": serialize_object(self.bias_constraint, "constraints")}


class SeparableConv1D(_SeparableConv):
    """Keras ``SeparableConv1D``; depthwise ``(k, in, m)``, pointwise ``(1, in*m,
    filters)``."""

    rank = 1


class SeparableConv2D(_SeparableConv):
    """Keras ``SeparableConv2D``; depthwise ``(kh, kw, in, m)``, pointwise
    ``(1, 1, in*m, filters)``."""

    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), depth_multiplier=1, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate,
                         depth_multiplier=depth_multiplier, **kwargs)


SeparableConvolution1D = SeparableConv1D
SeparableConvolution2D = SeparableConv2D


# ----------------------------------------------------------------------------- Transpose


class _ConvTranspose(_ConvBase):
    """Transposed conv (a GAN generator's upsampling): ``conv2d_backprop_input`` of the
    input with the kernel ``(*k, filters, in)`` — exactly the layout conv2d's filter has
    for the forward conv it is the adjoint of, so no flip or transpose is emitted. Output
    size follows Keras (``conv_transpose_output_length``)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        d = self._desc
        self.filters = _check_filters(self, filters)
        self._init_geometry(kernel_size, strides, padding, data_format, dilation_rate)
        if output_padding is None:
            self.output_padding = None
        else:
            self.output_padding = normalize_tuple(output_padding, self.rank,
                                                  "output_padding", d)
            if any(p < 0 or p >= s for p, s in zip(self.output_padding, self.strides)):
                raise ValueError(f"{d}: output_padding must be >= 0 and < strides, got "
                                 f"output_padding={self.output_padding}, "
                                 f"strides={self.strides}")
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self._init_common(activation, use_bias, bias_initializer, bias_regularizer,
                          bias_constraint)

    def build(self, input_shape):
        cin = self._channels(input_shape)
        self.kernel = self.add_weight(name="kernel",
                                      shape=self.kernel_size + (self.filters, cin),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self._add_bias(self.filters)
        self._spec_with_channels(cin)
        self.built = True

    def _axes(self, in_sp):
        ops_ = self.output_padding or (None,) * self.rank
        geo = [conv_transpose_geometry(n, k, s, self.padding, p, dd) for n, k, s, p, dd in
               zip(in_sp, self.kernel_size, self.strides, ops_, self.dilation_rate)]
        outs = [g[0] for g in geo]
        if any(o < 1 for o in outs):
            raise ShapeError(f"{self._desc}: output spatial size {tuple(outs)} would be empty "
                             f"for input spatial size {tuple(in_sp)}")
        return geo

    def call(self, inputs):
        x = self._to2d(inputs)
        in_sp = tuple(x.shape[3 - self.rank:3])
        geo = self._axes(in_sp)
        computed = [out - zeros for out, _, zeros in geo]
        pads = self._pair([p for _, p, _ in geo], (0, 0))
        out_shape = (x.shape[0],) + self._pair(computed) + (self.filters,)
        y = ops.apply("conv2d_backprop_input", x, self._kernel2d(self.kernel),
                      input_shape=out_shape, strides=self._pair(self.strides),
                      padding=pads, dilation=self._pair(self.dilation_rate), groups=1)
        zeros = self._pair([z for _, _, z in geo], 0)
        if any(zeros):
            y = ops.apply("pad", y, pads=((0, 0),) + tuple((0, z) for z in zeros) + ((0, 0),),
                          value=0.0)
        return self._finish(self._from2d(y))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, **self._geometry_config(),
                "output_padding": (None if self.output_padding is None
                                   else list(self.output_padding)),
                **self._tail_config(),
                "kernel_initializer": serialize_object(self.kernel_initializer, "initializers"),
                "kernel_regularizer": serialize_object(self.kernel_regularizer, "regularizers"),
                "kernel_constraint": serialize_object(self.kernel_constraint, "constraints"),
                **self._bias_config(),
                "bias_constraint": serialize_object(self.bias_constraint, "constraints")}


class Conv1DTranspose(_ConvTranspose):
    """Keras ``Conv1DTranspose``; kernel ``(k, filters, in)``."""

    rank = 1


class Conv2DTranspose(_ConvTranspose):
    """Keras ``Conv2DTranspose``; kernel ``(kh, kw, filters, in)``."""

    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1), **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         output_padding=output_padding, data_format=data_format,
                         dilation_rate=dilation_rate, **kwargs)


Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
