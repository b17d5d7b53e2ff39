"""Core layers: ``Dense``, ``Activation``, ``Dropout``, ``Lambda`` (and the small layers that
Python operators on KerasTensors create). Each ``call`` is written with ``graphc.ops`` and so
emits IR inside a trace and runs eagerly on numpy through the interpreter."""
from __future__ import annotations

from graphc.frontend import ops
from graphc.frontend.layers.base import (InputSpec, Layer, get_activation, get_constraint,
                                         get_initializer, get_regularizer,
                                         serialize_activation, serialize_object,
                                         stable_hash31)


class Dense(Layer):
    """``activation(inputs @ kernel + bias)`` on the last axis; kernel ``(in, units)``."""

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if int(units) <= 0:
            raise ValueError(f"{self._desc}: units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = get_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self.bias_constraint = get_constraint(bias_constraint)
        self.input_spec = InputSpec(min_ndim=2)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"{self._desc}: the last dimension of the inputs must be "
                             f"defined, got input shape {tuple(input_shape)}")
        self.kernel = self.add_weight(name="kernel", shape=(in_dim, self.units),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.bias = self.add_weight(name="bias", shape=(self.units,),
                                    initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint) if self.use_bias else None
        self.input_spec = InputSpec(min_ndim=2, axes={-1: in_dim})
        self.built = True

    def call(self, inputs):
        x = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return self.activation(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
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


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = get_activation(activation)

    def call(self, inputs):
        return self.activation(inputs)

    def get_config(self):
        return {**super().get_config(), "activation": serialize_activation(self.activation)}


class Dropout(Layer):
    """Keras ``Dropout(rate, noise_shape=None, seed=None)``.

    In training each element is kept where ``u >= rate`` for ``u`` drawn by the
    counter-based ``random_uniform`` op from the trace's ``seed`` and ``step`` and a salt
    hashed from the layer name (and ``seed``), and kept elements are scaled by
    ``1 / (1 - rate)``; in inference the layer is the identity. The mask is therefore a
    pure function of (run seed, step, layer), identical on every backend.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        rate = float(rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{self._desc}: rate must be in [0, 1], got {rate}")
        self.rate = rate
        self.noise_shape = tuple(noise_shape) if noise_shape is not None else None
        self.seed = seed
        key = self.name if seed is None else f"{self.name}:{int(seed)}"
        self._salt = stable_hash31(key)

    def call(self, inputs, training=None):
        if training is None:
            from graphc.frontend.tracing import current_trace
            ctx = current_trace()
            training = bool(ctx is not None and ctx.training)
        if not training or self.rate == 0.0:
            return inputs
        if self.rate == 1.0:
            return ops.multiply(inputs, 0.0)
        from graphc.frontend.tracing import current_trace
        ctx = current_trace()
        if ctx is None or ctx.seed is None or ctx.step is None:
            raise RuntimeError(f"{self._desc}: training-mode dropout needs the trace's seed "
                               f"and step values (TraceContext(seed=..., step=...))")
        shape = tuple(inputs.shape)
        if self.noise_shape is not None:
            if len(self.noise_shape) != len(shape):
                raise ValueError(f"{self._desc}: noise_shape {self.noise_shape} must have "
                                 f"the rank of the input {shape}")
            shape = tuple(d if n is None else int(n) for n, d in zip(self.noise_shape, shape))
        u = ops.apply("random_uniform", ctx.seed, ctx.step, shape=shape, salt=self._salt,
                      dtype=inputs.dtype)
        keep = ops.greater_equal(u, self.rate)
        return ops.where(keep, ops.multiply(inputs, 1.0 / (1.0 - self.rate)), 0.0)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": list(self.noise_shape) if self.noise_shape else None}


class Lambda(Layer):
    """Keras ``Lambda(function, output_shape=None, mask=None, arguments=None)``: the
    function is written with ``graphc.ops``. Saved configs carry only the function's name;
    loading needs it in ``custom_objects``."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(function, str):
            raise ValueError(f"{self._desc}: cannot rebuild function {function!r} from its "
                             f"name; pass it in custom_objects when loading")
        self.function = function
        self.arguments = dict(arguments or {})
        self._output_shape = output_shape

    def call(self, inputs, training=None):
        import inspect
        kw = dict(self.arguments)
        try:
            if "training" in inspect.signature(self.function).parameters:
                kw["training"] = training
        except (TypeError, ValueError):
            pass
        return self.function(inputs, **kw)

    def get_config(self):
        return {**super().get_config(),
                "function": getattr(self.function, "__name__", "lambda"),
                "arguments": self.arguments,
                "output_shape": list(self._output_shape) if self._output_shape else None}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        fn = config.pop("function")
        if isinstance(fn, str):
            if not custom_objects or fn not in custom_objects:
                raise ValueError(f"Lambda layer '{config.get('name')}': its function {fn!r} "
                                 f"cannot be restored from a file; pass "
                                 f"custom_objects={{{fn!r}: function}}")
            fn = custom_objects[fn]
        return cls(fn, **config)


class Identity(Layer):
    def call(self, inputs):
        return inputs


# --------------------------------------------------------------------------------------
# Python operators on KerasTensors (``x + y``, ``2 * x``): each application is a small
# layer in the graph, as Keras 3 records an op node. Saved as Keras 3 ops
# (module keras.src.ops.numpy, class Add/Subtract/Multiply/Divide/Negative).
# --------------------------------------------------------------------------------------

_OPERATOR_FNS = {"add": ops.add, "subtract": ops.subtract, "multiply": ops.multiply,
                 "divide": ops.divide, "negative": lambda x, _=None: ops.negative(x)}


class TFOpLambda(Layer):
    """One operator application; ``op`` is add/subtract/multiply/divide/negative,
    ``constant`` the non-tensor operand (if any) and ``reverse`` its side."""

    def __init__(self, op, constant=None, reverse=False, **kwargs):
        kwargs.setdefault("name", None)
        if kwargs["name"] is None:
            from graphc.frontend.layers.base import auto_name
            kwargs["name"] = auto_name(op)
        super().__init__(**kwargs)
        if op not in _OPERATOR_FNS:
            raise ValueError(f"TFOpLambda: unknown op {op!r}")
        self.op = op
        self.constant = constant
        self.reverse = bool(reverse)

    @property
    def _keras_class_name(self):
        return "".join(p.capitalize() for p in self.op.split("_"))

    def call(self, inputs, other=None):
        fn = _OPERATOR_FNS[self.op]
        if self.op == "negative":
            return fn(inputs)
        if isinstance(inputs, (list, tuple)):
            a, b = inputs
        elif other is not None:          # Keras 3 op node: op(x, y) with two arguments
            a, b = inputs, other
        else:
            a, b = inputs, self.constant
            if self.reverse:
                a, b = b, a
        return fn(a, b)

    def get_config(self):
        return {**super().get_config(), "op": self.op, "constant": self.constant,
                "reverse": self.reverse}


def _operator_layer(op, x, other=None, reverse=False):
    from graphc.frontend.keras_tensor import KerasTensor
    if isinstance(other, KerasTensor):
        pair = [other, x] if reverse else [x, other]
        return TFOpLambda(op)(pair)
    if other is not None and not isinstance(other, (int, float)):
        import numpy as np
        other = np.asarray(other).tolist()
    return TFOpLambda(op, constant=other, reverse=reverse)(x)
